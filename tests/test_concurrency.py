"""Four `cadence run --once` processes on one SQLite file: every email exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.helpers.runner_env import cadence_cmd, write_cadence, write_contacts

EMAILS = 2000
RUN = [sys.executable, "-m", "cadence_engine.cli", "run", "--once"]


def test_four_runners_send_each_message_once(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    env = {
        "CADENCE_DB": str(tmp_path / "state.db"),
        "CADENCE_TRANSPORT": f"outbox:{outbox}",
    }
    launched = cadence_cmd(
        "launch", str(write_cadence(tmp_path)), "--contacts", str(write_contacts(tmp_path, EMAILS)),
        "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z", env=env,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    runners = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cadence_engine.cli",
                "run",
                "--once",
                "--batch",
                "50",
                "--now",
                "2026-03-02T10:00Z",
            ],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in runners]
    assert [p.returncode for p in runners] == [0] * 4, outputs
    files = sorted(p.name for p in outbox.iterdir())
    # A second delivery of a Message-ID would be a `<id>.2.eml` file next to the first.
    assert len(files) == EMAILS
    assert all(name.count(".") == 2 for name in files), [f for f in files if f.count(".") != 2]
    ids = Counter(
        line.split(":", 1)[1].strip()
        for name in files
        for line in (outbox / name).read_text().splitlines()
        if line.startswith("Message-ID:")
    )
    assert len(ids) == EMAILS and set(ids.values()) == {1}
    # The work was shared: more than one runner sent something.
    sent = [int(out.split("sent ")[1].split(",")[0]) for out, _ in outputs if "sent " in out]
    assert sum(sent) == EMAILS
    assert len(sent) > 1
