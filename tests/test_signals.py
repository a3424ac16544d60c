"""Signals win: a reply, bounce or unsubscribe stops later steps, even mid-run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.launch import launch
from cadence_engine.engine.run.clock import Clock
from cadence_engine.engine.run.loop import Runner, RunOptions
from cadence_engine.engine.signals import record
from cadence_engine.engine.store import OutcomeKind, SignalKind, Store, open_store
from cadence_engine.engine.store.sqlite import SqliteStore
from cadence_engine.engine.transports import Envelope, Ready, Result, Withheld
from cadence_engine.engine.transports.outbox import OutboxTransport
from tests.helpers.runner_env import write_cadence, write_contacts

THREE = """\
cadence: 1
name: Three
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC, on_reply: {end: true, mark_success: true}}
templates:
  t: {subject: "Hello", body: "Body\\n"}
steps:
  - {id: a, day: 1, email: {template: t, send: {at: "09:00"}}}
  - {id: b, day: 2, email: {template: t, send: {at: "09:00"}}}
  - {id: c, day: 3, email: {template: t, send: {at: "09:00"}}}
"""
NOW = datetime(2026, 3, 2, 8, tzinfo=UTC)
LATER = datetime(2026, 3, 9, 10, tzinfo=UTC)  # every step is overdue


class ReplyOnFirstSend(OutboxTransport):
    """Delivers, and the first time records a reply through another connection."""

    def __init__(self, folder: Path, db: str, who: str) -> None:
        super().__init__(folder)
        self.db, self.who, self.sent = db, who, []  # type: ignore[var-annotated]

    def send_many(
        self, messages: Sequence[tuple[Envelope, bytes]], ready: Ready | None = None
    ) -> list[Result]:
        allowed = range(len(messages)) if ready is None else set(ready())
        answers: list[Result] = []
        for n, (envelope, data) in enumerate(messages):
            if n not in allowed:
                answers.append(Withheld())
                continue
            answers += super().send_many([(envelope, data)])
            self.sent.append(envelope.recipient)
            if len(self.sent) == 1:
                with open_store(self.db) as other:
                    record(other, SignalKind.REPLY, self.who, cadence=None, now=LATER)
        return answers


def _setup(tmp_path: Path, contacts: int, url: str | None = None) -> Store:
    store = open_store(url or str(tmp_path / "state.db"))
    launch(
        store,
        write_cadence(tmp_path, THREE),
        write_contacts(tmp_path, contacts),
        now=NOW,
        start="2026-03-02T08:00Z",
    )
    return store


def test_reply_during_a_run_stops_every_later_step(tmp_path: Path, store_url: str) -> None:
    with _setup(tmp_path, 1, store_url) as store:
        transport = ReplyOnFirstSend(tmp_path / "out", store_url, "person0@example.com")
        report = Runner(store, transport, clock=Clock(LATER)).run_once()
        assert transport.sent == ["person0@example.com"]  # a only; b and c never
        assert report.sent == 1
        states = [r.state for r in store.step_runs(1)]
        assert states == ["sent", "cancelled", "cancelled"]
        (status,) = store.status(int(LATER.timestamp()))
        assert status.finished["replied"] == 1


def test_reply_recorded_after_sending_commit_is_caught_before_the_transport(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both contacts' first emails are in one batch; the reply for the second arrives
    # right after `sending` was committed for both, before the transport gets them.
    with _setup(tmp_path, 2, store_url) as store:
        transport = ReplyOnFirstSend(tmp_path / "out", store_url, "nobody@x.example")
        begin = store.begin_sending

        def begin_then_reply(fence: int, ids: Iterable[int]) -> set[int]:
            ours = begin(fence, ids)
            with open_store(store_url) as other:
                record(other, SignalKind.REPLY, "person1@example.com", cadence=None, now=LATER)
            return ours

        monkeypatch.setattr(store, "begin_sending", begin_then_reply)
        report = Runner(
            store, transport, clock=Clock(LATER), options=RunOptions(batch=10)
        ).run_once()
        assert "person1@example.com" not in transport.sent
        assert [r.state for r in store.step_runs(2)] == ["cancelled"] * 3
        assert report.cancelled == 1


def test_reply_during_a_one_at_a_time_transport_stops_the_next_message(
    tmp_path: Path, store_url: str
) -> None:
    # A transport that hands over one message at a time (SMTP): the reply recorded while
    # the first is delivered stops the second at its `sending` commit.
    with _setup(tmp_path, 2, store_url) as store:
        transport = ReplyOnFirstSend(tmp_path / "out", store_url, "person1@example.com")
        transport.in_doubt = 1
        Runner(store, transport, clock=Clock(LATER), options=RunOptions(batch=10)).run_once()
        assert transport.sent == ["person0@example.com"]
        assert [r.state for r in store.step_runs(2)] == ["cancelled"] * 3


def test_reply_after_a_sending_commit_that_also_recorded_the_last_chunk_is_caught(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One message at a time: the first one's `sent` and the second one's `sending` are
    # committed together; a reply recorded right after that commit, before the last
    # check, still stops the second message.
    with _setup(tmp_path, 2, store_url) as store:
        transport = ReplyOnFirstSend(tmp_path / "out", store_url, "nobody@x.example")
        transport.in_doubt = 1
        check = store.stopped
        seen: list[list[str]] = []

        def reply_then_check(ids: Iterable[int]) -> dict[int, OutcomeKind]:
            wanted = list(ids)
            if transport.sent:  # the second chunk: its `sending` commit is behind us
                with open_store(store_url) as other:
                    seen.append([other.step_runs(e)[0].state for e in (1, 2)])
                    record(other, SignalKind.REPLY, "person1@example.com", cadence=None, now=LATER)
            return check(wanted)

        monkeypatch.setattr(store, "stopped", reply_then_check)
        report = Runner(
            store, transport, clock=Clock(LATER), options=RunOptions(batch=10)
        ).run_once()
        assert seen == [["sent", "sending"]]  # one commit recorded one, began the other
        assert transport.sent == ["person0@example.com"]
        assert [r.state for r in store.step_runs(2)] == ["cancelled"] * 3
        assert (report.sent, report.cancelled) == (1, 1)


def test_unsubscribe_suppresses_everywhere_and_events_are_idempotent(
    tmp_path: Path, monkeypatch: object
) -> None:
    db = tmp_path / "state.db"
    _setup(tmp_path, 2).close()
    runner = CliRunner()
    args = ["event", "unsubscribe", "--contact", "PERSON0@example.com", "--db", str(db)]
    first = runner.invoke(cadence, args)
    assert first.exit_code == 0 and "1 enrolment(s) ended" in first.output
    second = runner.invoke(cadence, args)
    assert "already recorded" in second.output
    with SqliteStore(db) as store:
        assert store.step_runs(1)[0].state == "cancelled"
        again = launch(
            store,
            write_cadence(tmp_path, THREE.replace("name: Three", "name: Other")),
            write_contacts(tmp_path, 2),
            now=NOW,
            allow_overlap=True,
        )
        assert again.suppressed == ("person0@example.com",)
        assert again.enrolled == 1


def _two_cadences(tmp_path: Path, end_b: str = "false") -> SqliteStore:
    store = SqliteStore(tmp_path / "state.db")
    for name, end in (("A", "true"), ("B", end_b)):
        text = THREE.replace("name: Three", f"name: Cad {name}").replace(
            "on_reply: {end: true,", f"on_reply: {{end: {end},"
        )
        launch(
            store,
            write_cadence(tmp_path, text, f"{name}.yaml"),
            write_contacts(tmp_path, 1),
            now=NOW,
            start="2026-03-02T08:00Z",
            allow_overlap=True,
        )
    return store


def _cli_db(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cadence, [*args, "--db", str(tmp_path / "state.db")])
    return result.exit_code, result.output


def test_reply_with_cadence_ends_only_that_one_and_on_reply_end_false_goes_on(
    tmp_path: Path,
) -> None:
    _two_cadences(tmp_path).close()
    who = ["--contact", "person0@example.com"]
    code, out = _cli_db(tmp_path, "event", "reply", *who, "--cadence", "Cad B")
    assert code == 0 and "0 enrolment(s) ended" in out  # on_reply.end false: goes on
    with SqliteStore(tmp_path / "state.db") as store:
        a, b = store.status(0)
        assert (a.cadence_name, a.active, a.successes) == ("Cad A", 1, 0)
        assert (b.cadence_name, b.active, b.successes) == ("Cad B", 1, 1)  # mark_success
        assert [r.state for r in store.step_runs(2)] == ["planned"] * 3
    code, out = _cli_db(tmp_path, "event", "reply", *who, "--cadence", "Cad A")
    assert code == 0 and "1 enrolment(s) ended, 3 step(s) cancelled" in out
    with SqliteStore(tmp_path / "state.db") as store:
        a, b = store.status(0)
        assert (a.active, a.finished["replied"], a.successes) == (0, 1, 1)
        assert b.active == 1


def test_reply_after_the_last_email_still_counts(tmp_path: Path) -> None:
    with _two_cadences(tmp_path, end_b="true") as store:
        # Back-filled a week late, the three emails still go out a campaign day apart.
        for days in range(3):
            at = LATER + timedelta(days=days)
            Runner(store, OutboxTransport(tmp_path / "out"), clock=Clock(at)).run_once()
        assert [v.finished["completed"] for v in store.status(0)] == [1, 1]
        record(store, SignalKind.REPLY, "person0@example.com", cadence="Cad A", now=LATER)
        a, b = store.status(0)
        assert (a.finished["replied"], a.finished["completed"], a.successes) == (1, 0, 1)
        assert (b.finished["completed"], b.successes) == (1, 0)


def test_signal_arguments_are_checked(tmp_path: Path) -> None:
    _two_cadences(tmp_path).close()
    code, out = _cli_db(tmp_path, "event", "reply", "--contact", "nobody", "--cadence", "Cad A")
    assert code == 2 and "not an email address" in out
    code, out = _cli_db(tmp_path, "event", "reply", "--contact", "a@b.example", "--cadence", "X")
    assert code == 2 and "no such cadence" in out and "'Cad A'" in out
    code, out = _cli_db(tmp_path, "event", "bounce", "--contact", "a@b.example")
    assert code == 0 and "suppressed for every cadence" in out
