"""A small world for the Command Center's tests: two reps' cadences, launched and run to
the day their call tasks open, three users (two reps, one admin)."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.store import open_store

CADENCE = """\
cadence: 1
name: {name}
sender: {{name: {sender_name}, email: {sender}}}
settings: {{skip_weekends: false, default_timezone: UTC}}
templates:
  intro: {{subject: "Intro for {{{{ contact.company }}}}", body: "Intro body.\\n"}}
  manual: {{subject: "Personal note", body: "Template text of the manual email.\\n"}}
  bump: {{body: "Bump body.\\n"}}
  final: {{subject: "Final", body: "Final body.\\n"}}
steps:
  - {{id: intro, day: 1, email: {{template: intro, send: {{at: "09:00"}}}}}}
  - id: call
    day: 2
    call: {{notes: "Ask {{{{ contact.first_name }}}} about {{{{ contact.company }}}}"}}
  - {{id: manual, day: 3, email: {{template: manual, send: task}}}}
  - {{id: bump, day: 4, email: {{template: bump, send: same_time_as_previous, follow_up: true}}}}
  - {{id: li, day: 5, inmail: {{notes: "Connect"}}}}
  - {{id: final, day: 6, email: {{template: final, send: {{at: "09:00"}}}}}}
"""

DANA = "dana@acme.example"
ELI = "eli@acme.example"
BOSS = "boss@acme.example"
AVA = "ava@northwind.example"
MALLORY = "mallory@evil.example"
BEN = "ben@globex.example"
HOSTILE_NAME = "<script>alert(1)</script>"


@dataclass(frozen=True)
class World:
    root: Path
    db: Path
    outbox: Path

    @property
    def env(self) -> dict[str, str]:
        return {"CADENCE_DB": str(self.db), "CADENCE_TRANSPORT": f"outbox:{self.outbox}"}

    def cli(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
        result = CliRunner().invoke(
            cadence, list(args), env={**self.env, **(env or {})}, catch_exceptions=False
        )
        assert result.exit_code == code, result.output
        return result.output

    def query(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db) as db:
            return db.execute(sql, args).fetchall()

    def execute(self, sql: str, *args: object) -> None:
        """One change made behind the engine's back (a state it would reach only by a
        crash, a server's answer or the passing of time)."""
        db = sqlite3.connect(self.db)
        try:
            with db:
                assert db.execute(sql, args).rowcount > 0, sql
        finally:
            db.close()

    def step(self, email: str, step_id: str) -> tuple[str, int]:
        ((state, due),) = self.query(
            "SELECT sr.state, sr.due_utc FROM step_runs sr JOIN enrolments e "
            "ON e.id = sr.enrolment_id WHERE e.email = ? AND sr.step_id = ?",
            email,
            step_id,
        )
        return str(state), int(due)  # type: ignore[call-overload]

    def task_id(self, email: str, step_id: str) -> int:
        ((found,),) = self.query(
            "SELECT sr.id FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id "
            "WHERE e.email = ? AND sr.step_id = ?",
            email,
            step_id,
        )
        return int(found)  # type: ignore[call-overload]

    def token(self, email: str) -> str:
        ((found,),) = self.query("SELECT unsubscribe_token FROM enrolments WHERE email = ?", email)
        return str(found)

    def link(self, email: str, base: str = "http://127.0.0.1:8080") -> str:
        return self.cli("users", "link", email, env={"CADENCE_BASE_URL": base}).splitlines()[0]


def make_world(root: Path) -> World:
    """Dana's cadence for Ava and Mallory (whose name is HTML), Eli's for Ben; launched on
    Mon 2 March 2026, run to Tuesday 15:00Z: intros sent, call tasks open."""
    world = World(root, root / "state.db", root / "outbox")
    contacts = {
        DANA: "email,first_name,company,phone,linkedin_url,timezone\n"
        f"{AVA},Ava,Northwind,+1 555 0100,https://www.linkedin.com/in/ava,America/New_York\n"
        f"{MALLORY},{HOSTILE_NAME},<b>Evil</b> & Co,,javascript:alert(1),\n",
        ELI: f"email,first_name,company\n{BEN},Ben,Globex\n",
    }
    for sender, name in ((DANA, "Dana outbound"), (ELI, "Eli outbound")):
        slug = sender.split("@")[0]
        path = root / f"{slug}.yaml"
        path.write_text(
            CADENCE.format(name=name, sender=sender, sender_name=slug.title()), encoding="utf-8"
        )
        listing = root / f"{slug}.csv"
        listing.write_text(contacts[sender], encoding="utf-8")
        world.cli(
            "launch", str(path), "--contacts", str(listing),
            "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z",
        )  # fmt: skip
    world.cli("run", "--once", "--now", "2026-03-02T15:00Z")
    world.cli("run", "--once", "--now", "2026-03-03T15:00Z")
    world.cli("users", "add", DANA, "--name", "Dana Reyes", "--timezone", "Europe/Amsterdam")
    world.cli("users", "add", ELI, "--name", "Eli Park")
    world.cli("users", "add", BOSS, "--admin")
    return world


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]*)"', html)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


CY = "cy@cyberdyne.example"  # in Eli's cadence that has the same name as Dana's


def add_trouble(world: World) -> None:
    """What `cadence status` has beyond the happy path, in both reps' cadences: Eli also
    launches a cadence named "Dana outbound" (his own sender) for Cy; an unknown send, a
    failed step and an auto-reply pause in each rep's; a retrying step and an operator's
    pause (Ben, Eli's) besides."""
    path = world.root / "eli-same-name.yaml"
    path.write_text(
        CADENCE.format(name="Dana outbound", sender=ELI, sender_name="Eli"), encoding="utf-8"
    )
    listing = world.root / "cy.csv"
    listing.write_text(f"email,first_name,company\n{CY},Cy,Cyberdyne\n", encoding="utf-8")
    world.cli(
        "launch", str(path), "--contacts", str(listing),
        "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z",
    )  # fmt: skip
    world.cli("run", "--once", "--now", "2026-03-02T15:00Z")  # Cy's intro goes out
    for email in (AVA, CY):
        world.execute(
            "UPDATE step_runs SET state = 'unknown', answer = ? WHERE step_id = 'intro' "
            "AND enrolment_id IN (SELECT id FROM enrolments WHERE email = ?)",
            f"connection lost after DATA ({email})",
            email,
        )
        world.execute(
            "UPDATE step_runs SET state = 'failed', answer = '550 5.1.1 no such user' "
            "WHERE step_id = 'final' "
            "AND enrolment_id IN (SELECT id FROM enrolments WHERE email = ?)",
            email,
        )
    world.execute(
        "UPDATE step_runs SET attempts = 1 WHERE step_id = 'bump' "
        "AND enrolment_id IN (SELECT id FROM enrolments WHERE email = ?)",
        AVA,
    )
    store = open_store(str(world.db))
    try:
        at = int(datetime(2026, 3, 3, 12, 0, tzinfo=UTC).timestamp())
        until = int(datetime(2026, 3, 10, 0, 0, tzinfo=UTC).timestamp())
        for email in (MALLORY, CY, BEN):
            (enrolment,) = store.enrolments(email=email)
            auto = email != BEN
            store.pause(
                enrolment.id,
                at,
                until if auto else None,
                f"out of office ({email})" if auto else "asked to wait",
                source="mailbox imaps://inbox uid 7" if auto else "command",
            )
    finally:
        store.close()
