"""Runner decisions at run time: the daily limit per sender across launches and cadences."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from engine.launch import launch
from engine.runner import Clock, Runner
from engine.store.sqlite import SqliteStore
from engine.transports.outbox import OutboxTransport
from tests.helpers.runner_env import write_cadence

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
