"""Runner decisions at run time: the daily limit per sender, no catch-up burst after a back-fill."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.launch import launch
from cadence_engine.engine.run.clock import Clock
from cadence_engine.engine.run.loop import Runner
from cadence_engine.engine.store.sqlite import SqliteStore
from cadence_engine.engine.transports.outbox import OutboxTransport
from tests.helpers.runner_env import ROOT, write_cadence

LIMITED = """\
cadence: 1
name: {name}
sender: {{name: Dana Reyes, email: dana@acme.example}}
settings: {{skip_weekends: true, default_timezone: UTC, daily_limit: 2}}
templates:
  t: {{subject: "Hello", body: "Body\\n"}}
steps:
  - {{id: hello, day: 1, email: {{template: t, send: {{at: "09:00"}}}}}}
"""


def _utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def test_daily_limit_is_per_sender_across_launches_and_cadences(tmp_path: Path) -> None:
    start = datetime(2026, 3, 6, 8, tzinfo=UTC)  # a Friday
    with SqliteStore(tmp_path / "state.db") as store:
        for name, emails in (("A", ["a1", "a2", "a3"]), ("B", ["b1", "b2"])):
            contacts = tmp_path / f"{name}.csv"
            contacts.write_text("email\n" + "".join(f"{e}@x.example\n" for e in emails))
            path = write_cadence(tmp_path, LIMITED.format(name=name), f"{name}.yaml")
            launch(store, path, contacts, now=start, start="2026-03-06T08:00Z")
        out = OutboxTransport(tmp_path / "out")
        # Friday 10:00: two go out (the limit is the sender's, whatever the cadence).
        report = Runner(store, out, clock=Clock(datetime(2026, 3, 6, 10, tzinfo=UTC))).run_once()
        assert (report.sent, report.rescheduled) == (2, 2)  # a3 was planned for Monday
        rows = [store.step_runs(i)[0] for i in range(1, 6)]
        moved = sorted(r.due_utc for r in rows if r.state == "planned")
        # To the next campaign day (Monday, skip_weekends) at the email's own 09:00.
        assert moved == [_utc("2026-03-09T09:00")] * 3
        # A later run the same day finds the day full still.
        again = Runner(store, out, clock=Clock(datetime(2026, 3, 6, 16, tzinfo=UTC))).run_once()
        assert again.sent == 0
        monday = Runner(store, out, clock=Clock(datetime(2026, 3, 9, 10, tzinfo=UTC))).run_once()
        assert (monday.sent, monday.rescheduled) == (2, 1)
        tuesday = Runner(store, out, clock=Clock(datetime(2026, 3, 10, 10, tzinfo=UTC))).run_once()
        assert tuesday.sent == 1
        assert len(list((tmp_path / "out").iterdir())) == 5


def test_a_back_filled_email_and_its_follow_up_never_go_out_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs at 18:00 New York (outside the 09:00-17:30 window) push `thanks` (day 1) past
    `nudge` (day 3); when `thanks` finally goes out, `nudge` moves to the next campaign
    day at its own time and the rest of the schedule keeps its gaps (day 3 → day 5)."""
    monkeypatch.setenv("CADENCE_DB", str(tmp_path / "c.db"))
    monkeypatch.setenv("CADENCE_TRANSPORT", f"outbox:{tmp_path / 'out'}")
    contacts = tmp_path / "c.csv"
    lines = (ROOT / "cadences" / "contacts.csv").read_text(encoding="utf-8").splitlines()
    contacts.write_text("\n".join(lines[:2]) + "\n", encoding="utf-8")  # Ava, New York

    def cli(*args: str) -> str:
        result = CliRunner().invoke(cadence, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    cli(
        "launch", str(ROOT / "cadences" / "event-follow-up.yaml"), "--contacts", str(contacts),
        "--start", "2026-03-02T00:00Z", "--now", "2026-03-02T00:00Z",
    )  # fmt: skip
    for day in ("02", "03", "04"):
        cli("run", "--once", "--now", f"2026-03-{day}T23:00Z")
    assert "sent 1," in cli("run", "--once", "--now", "2026-03-05T16:00Z")
    with SqliteStore(tmp_path / "c.db") as store:
        times = {r.step_id: r.due_utc for r in store.step_runs(1)}
        events = [e for e in store.events() if e.kind == "rescheduled"]
    assert [e.detail for e in events[-4:]] == ["after previous step"] * 4
    cli("run", "--once", "--now", "2026-03-06T18:00Z")
    new_york = ZoneInfo("America/New_York")
    dates = {}
    for path in (tmp_path / "out").iterdir():
        msg = message_from_bytes(path.read_bytes())
        step = "nudge" if msg["Subject"].startswith("Re:") else "thanks"
        dates[step] = parsedate_to_datetime(msg["Date"]).astimezone(new_york)
    assert dates["thanks"].date().isoformat() == "2026-03-05"  # Thursday
    assert dates["nudge"].date().isoformat() == "2026-03-06"  # the next campaign day
    # Shifted by the same two campaign days: slides stays two campaign days after nudge
    # (Fri → Tue over the weekend), at its own 11:30; the call keeps its 15:00.
    slides = datetime.fromtimestamp(times["slides"], UTC).astimezone(new_york)
    call = datetime.fromtimestamp(times["call"], UTC).astimezone(new_york)
    assert slides.isoformat() == "2026-03-10T11:30:00-04:00"
    assert call.isoformat() == "2026-03-11T15:00:00-04:00"


WINDOWED = """\
cadence: 1
name: Windowed
sender: {name: Dana Reyes, email: dana@acme.example}
settings:
  skip_weekends: false
  timezone: contact
  default_timezone: UTC
  send_window: {start: "08:00", end: "18:00"}
templates:
  t: {subject: "Hello", body: "Body\\n"}
steps:
  - {id: hello, day: 1, email: {template: t, send: {at: "09:00"}}}
"""


def test_a_late_claim_judges_the_send_window_in_each_contacts_own_zone(tmp_path: Path) -> None:
    contacts = tmp_path / "c.csv"
    contacts.write_text(
        "email,timezone\n"
        "ams1@x.example,Europe/Amsterdam\n"
        "la@x.example,America/Los_Angeles\n"
        "ams2@x.example,Europe/Amsterdam\n"
    )
    with SqliteStore(tmp_path / "state.db") as store:
        path = write_cadence(tmp_path, WINDOWED)
        launch(store, path, contacts, now=datetime(2026, 3, 2, 6, tzinfo=UTC), start="now")
        # 07:30Z: 08:30 in Amsterdam (open), 23:30 the day before in Los Angeles (closed).
        clock = Clock(datetime(2026, 3, 3, 7, 30, tzinfo=UTC))
        report = Runner(store, OutboxTransport(tmp_path / "out"), clock=clock).run_once()
        rows = {r.email: r for r in (store.step_runs(e)[0] for e in (1, 2, 3))}
    assert (report.sent, report.rescheduled) == (2, 1)
    assert rows["ams1@x.example"].state == rows["ams2@x.example"].state == "sent"
    la = rows["la@x.example"]
    # The next opening in its own zone: 08:00 on 3 March in Los Angeles (PST) = 16:00Z.
    assert la.state == "planned" and la.due_utc == _utc("2026-03-03T16:00")
