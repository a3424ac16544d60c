#!/usr/bin/env python3
"""Take the README's Command Center screenshots with headless Debian Chromium.

Builds a demo state in a temporary folder (the example cadence launched on Monday 2 March
2026 and a small cadence whose first email is a rep's task), serves it with a real
`cadence serve --now 2026-03-03T15:00Z`, signs Dana in by her link, and saves
queue.png and compose.png next to this script.

    .venv/bin/python docs/screenshots/take.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.serve_process import chromium_page, serving  # noqa: E402

PERSONAL = """\
cadence: 1
name: Booth visitors — personal notes
sender: {name: Dana Reyes, email: dana@acme.example}
contact_fields: [team_size]
settings: {skip_weekends: true, timezone: contact, default_timezone: Europe/Amsterdam}
templates:
  note:
    subject: "Good to meet you at KubeSummit, {{ contact.first_name }}"
    body: |
      Hi {{ contact.first_name }},

      Thanks for stopping by our booth. You mentioned {{ contact.company }} runs its
      own on-call rotation across {{ contact.team_size | default("several") }} engineers;
      here is the runbook template we talked about.

      Would Thursday or Friday suit for a 20-minute walkthrough?

      Dana
steps:
  - {id: note, day: 1, email: {template: note, send: task}}
  - {id: call, day: 3, call: {notes: "Ask how the runbook trial went"}}
"""
VISITORS = """\
email,first_name,last_name,company,team_size,phone,timezone
ines.garcia@initech.example,Inés,García,Initech,14,+34 600 123 456,Europe/Madrid
tom.becker@hooli.example,Tom,Becker,Hooli,40,+49 30 1234567,Europe/Berlin
mei.tan@vandelay.example,Mei,Tan,Vandelay,9,+65 6123 4567,Asia/Singapore
"""


def cadence(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "cadence_engine.cli", *args], env=env, cwd=ROOT, check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def link(env: dict[str, str], base: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "cadence_engine.cli", "users", "link", "dana@acme.example"],
        env={**env, "CADENCE_BASE_URL": base}, cwd=ROOT, check=True, capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {
            **os.environ,
            "CADENCE_DB": str(work / "state.db"),
            "CADENCE_TRANSPORT": f"outbox:{work / 'outbox'}",
        }
        (work / "personal.yaml").write_text(PERSONAL, encoding="utf-8")
        (work / "visitors.csv").write_text(VISITORS, encoding="utf-8")
        start = ["--start", "2026-03-02T00:00Z", "--now", "2026-03-02T00:00Z"]
        cadence(env, "launch", "cadences/heads-of-platform.yaml", "--contacts",
                "cadences/contacts.csv", "--send-at", "09:00", *start)  # fmt: skip
        cadence(env, "launch", str(work / "personal.yaml"), "--contacts",
                str(work / "visitors.csv"), *start)  # fmt: skip
        for at in ("2026-03-02T09:05Z", "2026-03-02T15:05Z", "2026-03-02T18:05Z",
                   "2026-03-03T09:05Z", "2026-03-03T14:05Z"):  # fmt: skip
            cadence(env, "run", "--once", "--now", at)
        cadence(env, "event", "reply", "--contact", "ben.smith@globex.example",
                "--now", "2026-03-03T13:12Z")  # fmt: skip
        cadence(env, "users", "add", "dana@acme.example", "--name", "Dana Reyes",
                "--timezone", "Europe/Amsterdam")  # fmt: skip
        with chromium_page() as page, serving(env, "--now", "2026-03-03T15:00Z") as base:
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto(link(env, base))
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/")
            page.screenshot(path=str(HERE / "queue.png"))
            page.get_by_role("link", name="Email Inés García: Good to meet you").click()
            page.locator("textarea[name=body]").fill(
                page.locator("textarea[name=body]")
                .input_value()
                .replace(
                    "Would Thursday", "Loved your question about paging fatigue. Would Thursday"
                )
            )
            page.screenshot(path=str(HERE / "compose.png"))
            page.goto(base + "/feed")
            page.screenshot(path=str(HERE / "feed.png"))
    print(f"wrote {HERE / 'queue.png'}, {HERE / 'compose.png'}, {HERE / 'feed.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
