"""The store contract (engine.store.contract), stated against the interface.

Every store runs this same suite: `store_factory` opens a new connection to one fresh
store (the same database each call, as a second runner would). It runs on SQLite and
PostgreSQL; another store joins by adding itself to `STORES`, unchanged tests and all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cadence_engine.engine.errors import NotFound, UsageError
from cadence_engine.engine.plan import Action
from cadence_engine.engine.store import (
    Cursor,
    Ending,
    EnrolmentState,
    EventRecord,
    Move,
    NewEnrolment,
    NewStep,
    Outcome,
    OutcomeKind,
    Signal,
    SignalKind,
    StepState,
    Store,
    TaskFilter,
    open_store,
)
from tests.helpers.threads import together

StoreFactory = Callable[[], Store]


def _sqlite(request: pytest.FixtureRequest) -> StoreFactory:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return lambda: open_store(str(tmp_path / "state.db"))


def _postgresql(request: pytest.FixtureRequest) -> StoreFactory:
    url: str = request.getfixturevalue("postgres_url")  # a fresh database (conftest)
    return lambda: open_store(url)


STORES = {"sqlite": _sqlite, "postgresql": _postgresql}


@pytest.fixture(params=sorted(STORES))
def store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    factory: StoreFactory = STORES[request.param](request)
    return factory


@pytest.fixture
def store(store_factory: StoreFactory) -> Iterator[Store]:
    with store_factory() as s:
        s.save_version("h1", "C", "source: yaml", json.dumps({"name": "C"}), 0)
        s.save_version("h2", "D", "source: yaml", json.dumps({"name": "D"}), 0)
        yield s


def enrolment(email: str, due: int = 100, *, task: bool = False) -> NewEnrolment:
    first = Action.CALL_TASK if task else Action.SEND_EMAIL
    return NewEnrolment(
        email=email,
        contact=json.dumps({"email": email, "fields": {}, "timezone": None, "row": 1}),
        uid="u-" + email + str(due),
        unsubscribe_token="t-" + email + str(due),
        steps=(
            NewStep("a", 0, 1, first, "UTC", due, None, None if task else f"<a.{email}>"),
            NewStep("b", 1, 2, Action.SEND_EMAIL, "UTC", due + 10, "a", f"<b.{email}>"),
        ),
    )


def test_versions_are_kept_and_a_missing_one_is_not_found(store: Store) -> None:
    assert store.version("h1") == (json.dumps({"name": "C"}), "source: yaml")
    assert store.versions()["h2"][0] == "D"
    with pytest.raises(NotFound):
        store.version("nope")


def test_launch_is_idempotent_and_skips_suppressed_addresses(store: Store) -> None:
    assert store.launch("C", "h1", [enrolment("a@x.example")], 1).enrolled == ("a@x.example",)
    again = store.launch("C", "h1", [enrolment("a@x.example", 5), enrolment("b@x.example")], 2)
    assert again.enrolled == ("b@x.example",) and again.already_enrolled == ("a@x.example",)
    assert store.suppress("c@x.example", "unsubscribe", 3)
    assert not store.suppress("c@x.example", "unsubscribe", 4)
    assert store.launch("D", "h2", [enrolment("c@x.example")], 4).suppressed == ("c@x.example",)
    assert [e.email for e in store.enrolments(cadence="C")] == ["a@x.example", "b@x.example"]


def test_exclusivity_reports_the_other_cadence_unless_overlap_is_allowed(store: Store) -> None:
    store.launch("C", "h1", [enrolment("a@x.example")], 1)
    other = store.launch("D", "h2", [enrolment("a@x.example", 7)], 2)
    assert other.enrolled == () and other.overlapping == (("a@x.example", "C"),)
    both = store.launch("D", "h2", [enrolment("a@x.example", 7)], 2, allow_overlap=True)
    assert both.enrolled == ("a@x.example",)


def test_claim_takes_only_reachable_rows_and_fences_them(store: Store) -> None:
    store.launch("C", "h1", [enrolment("a@x.example")], 1)
    claim = store.claim(1000, 10, 60)
    (row,) = claim.rows  # step b is due too, but held until a is settled (R5)
    assert (row.step_id, row.state, row.fence) == ("a", StepState.CLAIMED, claim.fence)
    assert row.lease_until is not None and row.lease_until >= store.clock() + 50
    assert store.claim(1000, 10, 60).rows == ()  # claimed rows are nobody else's
    assert store.begin_sending(claim.fence, [row.id]) == {row.id}
    store.finish(claim.fence - 1, [Outcome(row.id, OutcomeKind.SENT, 5, "250 ok")])
    assert store.step_run(row.id).state is StepState.SENDING  # type: ignore[union-attr]
    store.finish(claim.fence, [Outcome(row.id, OutcomeKind.SENT, 5, "250 ok")])
    assert store.step_run(row.id).sent_utc == 5  # type: ignore[union-attr]
    nxt = store.claim(1000, 10, 60)
    assert [r.step_id for r in nxt.rows] == ["b"] and nxt.fence > claim.fence
    assert nxt.rows[0].thread_sent_utc == 5


def test_not_yet_due_rows_and_ended_enrolments_are_not_claimed(store: Store) -> None:
    store.launch("C", "h1", [enrolment("a@x.example", due=500)], 1)
    assert store.claim(499, 10, 60).rows == ()
    (e,) = store.enrolments()
    assert store.end_enrolments([Ending(e.id, e.state, EnrolmentState.REMOVED)], 2) == 2
    assert store.claim(1000, 10, 60).rows == ()
    assert [r.state for r in store.step_runs(e.id)] == [StepState.CANCELLED] * 2


def test_leases_expire_by_the_stores_clock(store: Store) -> None:
    store.launch("C", "h1", [enrolment("a@x.example"), enrolment("b@x.example")], 1)
    claim = store.claim(1000, 10, 0.05)
    by_email = {r.email: r.id for r in claim.rows}
    store.begin_sending(claim.fence, [by_email["a@x.example"]])
    time.sleep(0.1)
    # Before any claim converts it, the crashed run's `sending` row shows as unknown.
    assert [r.id for r in store.unknown_sends()] == [by_email["a@x.example"]]
    (status,) = store.status(1000)
    assert (status.unknown, status.sending, status.claimed) == (1, 0, 0)
    assert status.held == 1  # a@x's step b waits behind it, as behind a converted one
    again = store.claim(1000, 10, 60)
    # `sending` → unknown (never resent automatically); only `claimed` → claimable again.
    assert [r.email for r in again.rows] == ["b@x.example"]
    unknown = store.step_run(by_email["a@x.example"])
    assert unknown is not None and unknown.state is StepState.UNKNOWN
    assert [e.kind for e in store.events(step_run_id=unknown.id)] == ["unknown"]
    assert store.resolve(unknown.id, False, 70)
    assert not store.resolve(unknown.id, False, 71)  # no longer unknown
    back = store.step_run(unknown.id)
    assert back is not None and back.state is StepState.PLANNED
    assert back.message_id == "<a.a@x.example>"  # the same Message-ID goes out again


def test_release_gives_claimed_rows_back_at_once(store: Store) -> None:
    store.launch("C", "h1", [enrolment("a@x.example"), enrolment("b@x.example")], 1)
    claim = store.claim(1000, 10, 60)
    store.begin_sending(claim.fence, [claim.rows[0].id])
    assert store.release(claim.fence) == 1  # only the row still `claimed`
    assert [r.id for r in store.claim(1000, 10, 60).rows] == [claim.rows[1].id]


def test_a_signal_after_the_claim_wins_over_it(store: Store) -> None:
    store.launch("C", "h1", [enrolment("a@x.example"), enrolment("b@x.example")], 1)
    claim = store.claim(1000, 10, 60)
    a, b = (r.id for r in claim.rows)
    assert store.record_signal(Signal(SignalKind.REPLY, "a@x.example", None, 2, "web"))
    assert not store.record_signal(Signal(SignalKind.REPLY, "a@x.example", None, 3, "web"))
    (ea,) = store.enrolments(email="a@x.example")
    store.end_enrolments([Ending(ea.id, EnrolmentState.ACTIVE, EnrolmentState.REPLIED)], 2)
    assert store.begin_sending(claim.fence, [a, b]) == {b}
    assert store.step_run(a).state is StepState.CANCELLED  # type: ignore[union-attr]
    # The last check before the transport: a suppression recorded after `sending`.
    store.suppress("b@x.example", "bounce", 4)
    assert store.stopped([a, b]) == {a: OutcomeKind.CANCELLED, b: OutcomeKind.CANCELLED}
    (event,) = store.events(email="a@x.example", newest_first=True, limit=1)
    assert (event.kind, event.source) == ("reply", "web")


def test_suppression_reaches_every_cadence(store: Store) -> None:
    store.launch("C", "h1", [enrolment("a@x.example")], 1)
    store.launch("D", "h2", [enrolment("a@x.example", 9)], 1, allow_overlap=True)
    store.suppress("A@X.example", "unsubscribe", 2)
    assert store.is_suppressed("a@x.example")
    rows = store.claim(1000, 10, 60).rows
    assert len(rows) == 2 and all(r.suppressed for r in rows)
    assert set(store.stopped(r.id for r in rows).values()) == {OutcomeKind.CANCELLED}


def test_endings_apply_only_from_the_expected_state(store: Store) -> None:
    store.launch("C", "h1", [enrolment("a@x.example")], 1)
    (e,) = store.enrolments()
    stale = Ending(e.id, EnrolmentState.PAUSED, EnrolmentState.REPLIED)
    assert store.end_enrolments([stale], 2) == 0
    assert store.enrolment(e.id).state is EnrolmentState.ACTIVE  # type: ignore[union-attr]
    success = Ending(e.id, EnrolmentState.ACTIVE, EnrolmentState.ACTIVE, success=True)
    store.end_enrolments([success], 3)
    assert store.enrolment(e.id).success  # type: ignore[union-attr]


def test_pause_holds_every_step_and_resume_applies_the_moves(store: Store) -> None:
    store.launch("C", "h1", [enrolment("a@x.example")], 1)
    (e,) = store.enrolments()
    claim = store.claim(1000, 10, 60)
    assert store.pause(e.id, 5, None, "by hand") and not store.pause(e.id, 5, None, "")
    assert store.begin_sending(claim.fence, [claim.rows[0].id]) == set()  # given back
    assert store.step_run(claim.rows[0].id).state is StepState.PLANNED  # type: ignore[union-attr]
    assert store.claim(1000, 10, 60).rows == ()
    paused = store.enrolment(e.id)
    assert paused is not None and (paused.state, paused.paused_utc) == (EnrolmentState.PAUSED, 5)
    first = store.step_runs(e.id)[0].id
    assert store.resume(e.id, 9, [Move(first, 2000, 2000, "after pause")])
    assert not store.resume(e.id, 9, [])
    assert store.step_run(first).due_utc == 2000  # type: ignore[union-attr]
    kinds = [x.kind for x in store.events(enrolment_id=e.id)]
    assert kinds[-3:] == ["paused", "resumed", "rescheduled"]
    assert store.claim(1999, 10, 60).rows == ()  # moved on by the pause
    assert [r.due_utc for r in store.claim(2000, 10, 60).rows] == [2000]


def test_outcomes_move_rows_to_their_states(store: Store) -> None:
    store.launch("C", "h1", [enrolment(f"{n}@x.example", task=n == "t") for n in "pqrst"], 1)
    claim = store.claim(1000, 10, 60)
    rows = {r.email[0]: r.id for r in claim.rows}
    store.finish(
        claim.fence,
        [
            Outcome(rows["p"], OutcomeKind.RETRY, 10, "421 busy", retry_utc=70),
            Outcome(rows["q"], OutcomeKind.RESCHEDULED, 10, "send window", retry_utc=80),
            Outcome(rows["r"], OutcomeKind.FAILED, 10, "cannot build"),
            Outcome(rows["s"], OutcomeKind.RELEASED, 10),
            Outcome(rows["t"], OutcomeKind.OPENED, 10),
        ],
    )
    p, q, r, s, t = (store.step_run(rows[k]) for k in "pqrst")
    assert p is not None and (p.state, p.due_utc, p.attempts) == (StepState.PLANNED, 70, 1)
    assert q is not None and (q.state, q.due_utc, q.attempts) == (StepState.PLANNED, 80, 0)
    assert r is not None and (r.state, r.answer) == (StepState.FAILED, "cannot build")
    assert s is not None and (s.state, s.fence) == (StepState.PLANNED, None)
    assert t is not None and t.state is StepState.OPEN
    (status,) = store.status(50)
    assert (status.failed, status.retrying, status.open_tasks) == (1, 1, 1)
    assert [x.id for x in store.tasks(TaskFilter())] == [t.id]


def test_a_sent_or_unknown_email_keeps_the_unsubscribe_link_it_carried(store: Store) -> None:
    store.launch("C", "h1", [enrolment(f"{n}@x.example") for n in "pqr"], 1)
    claim = store.claim(1000, 10, 60)
    rows = {r.email[0]: r.id for r in claim.rows}
    store.begin_sending(claim.fence, rows.values())
    link = "https://cad.example.com/u/t-p"
    store.finish(
        claim.fence,
        [
            Outcome(rows["p"], OutcomeKind.SENT, 10, "250 ok", unsubscribe_url=link),
            Outcome(rows["q"], OutcomeKind.UNKNOWN, 10, "lost", unsubscribe_url="mailto:q"),
            Outcome(rows["r"], OutcomeKind.FAILED, 10, "cannot build"),
        ],
    )
    p, q, r = (store.step_run(rows[k]) for k in "pqr")
    assert p is not None and (p.state, p.unsubscribe_url) == (StepState.SENT, link)
    assert q is not None and (q.state, q.unsubscribe_url) == (StepState.UNKNOWN, "mailto:q")
    assert r is not None and r.unsubscribe_url is None
    assert store.resolve(rows["q"], True, 20)
    resolved = store.step_run(rows["q"])
    assert resolved is not None and resolved.unsubscribe_url == "mailto:q"


def test_tasks_settle_once_and_an_email_task_is_taken_once(store: Store) -> None:
    store.launch("C", "h1", [enrolment("t@x.example", task=True)], 1)
    (row,) = store.claim(1000, 10, 60).rows
    store.finish(row.fence or 0, [Outcome(row.id, OutcomeKind.OPENED, 10)])
    later = store.step_runs(row.enrolment_id)[1]
    assert store.settle_task(row.id, StepState.DONE, 20, [Move(later.id, 999, 999, "late")])
    assert not store.settle_task(row.id, StepState.SKIPPED, 21, [])
    assert store.step_run(later.id).due_utc == 999  # type: ignore[union-attr]
    assert store.take_task_email(row.id, "s", "b", 60) is None  # not an open email task


def test_lookups_for_inbound_mail(store: Store) -> None:
    store.launch("C", "h1", [enrolment("a@x.example")], 1)
    found = store.step_run_by_message_id("<b.a@x.example>")
    assert found is not None and found.step_id == "b"
    assert store.step_run_by_message_id("<nope@x.example>") is None
    assert store.cursor("imaps://box") is None
    store.set_cursor("imaps://box", Cursor(7, 41))
    store.set_cursor("imaps://box", Cursor(7, 42))
    assert store.cursor("imaps://box") == Cursor(7, 42)
    assert store.seen_inbound(["k1", "k2"]) == set()  # a read: inserts nothing
    assert store.remember_inbound("k1", "imaps://box", 5)
    assert not store.remember_inbound("k1", "imaps://box", 6)
    assert store.seen_inbound(["k1", "k2", "k1"]) == {"k1"}
    assert store.seen_inbound([f"k{n}" for n in range(1200)]) == {"k1"}  # past 999 parameters


def test_a_batch_commits_its_writes_together_or_not_at_all(
    store: Store, store_factory: StoreFactory
) -> None:
    store.launch("C", "h1", [enrolment("a@x.example")], 1)
    with store_factory() as other:
        with store.batch():
            assert store.remember_inbound("k1", "imaps://box", 5)
            with store.batch():  # a batch inside a batch joins it
                store.record_signal(Signal(SignalKind.REPLY, "a@x.example", None, 5, "uid 1"))
            store.set_cursor("imaps://box", Cursor(7, 1))
            assert store.seen_inbound(["k1"]) == {"k1"}  # reads inside see the writes
            assert other.seen_inbound(["k1"]) == set()  # nothing committed yet
            assert other.cursor("imaps://box") is None
        assert other.seen_inbound(["k1"]) == {"k1"}
        assert other.cursor("imaps://box") == Cursor(7, 1)
        assert [e.kind for e in other.events() if e.source == "uid 1"] == ["reply"]
    with pytest.raises(RuntimeError), store.batch():
        assert store.remember_inbound("k2", "imaps://box", 6)
        store.set_cursor("imaps://box", Cursor(7, 2))
        raise RuntimeError("a crash before the commit")
    assert store.seen_inbound(["k2"]) == set()  # rolled back, all of it
    assert store.cursor("imaps://box") == Cursor(7, 1)
    assert store.remember_inbound("k2", "imaps://box", 7)  # and usable after


def test_a_chunks_outcomes_and_the_next_chunks_sending_commit_as_one(
    store: Store, store_factory: StoreFactory
) -> None:
    # The runner's pipeline: chunk k's outcomes and chunk k+1's `sending` in one batch.
    store.launch("C", "h1", [enrolment(f"{n}@x.example") for n in "abcd"], 1)
    claim = store.claim(1000, 10, 60)
    a, b, c, d = (r.id for r in claim.rows)
    assert store.begin_sending(claim.fence, [a]) == {a}
    with store_factory() as other:

        def states() -> list[StepState]:
            return [other.step_run(i).state for i in (a, b, c, d)]  # type: ignore[union-attr]

        with pytest.raises(RuntimeError), store.batch():
            store.finish(claim.fence, [Outcome(a, OutcomeKind.SENT, 10, "250 ok")])
            assert store.begin_sending(claim.fence, [b]) == {b}
            raise RuntimeError("a crash before the commit")
        sending, claimed = StepState.SENDING, StepState.CLAIMED
        assert states() == [sending, claimed, claimed, claimed]  # neither was kept

        with store.batch():
            store.finish(claim.fence, [Outcome(a, OutcomeKind.SENT, 10, "250 ok")])
            # A bounce recorded in the same batch is seen by the `sending` check after it.
            store.suppress("c@x.example", "bounce", 10)
            assert store.begin_sending(claim.fence, [b, c]) == {b}
            assert states() == [sending, claimed, claimed, claimed]  # nothing committed yet
        assert states() == [StepState.SENT, sending, StepState.CANCELLED, claimed]
        assert [e.kind for e in other.events(step_run_id=a)][-1] == "sent"
    assert store.release(claim.fence) == 1  # d, never handed over


def test_an_enrolment_by_its_unsubscribe_token(store: Store) -> None:
    store.launch("C", "h1", [enrolment("a@x.example"), enrolment("b@x.example")], 1)
    (found,) = store.enrolments_by_token("t-a@x.example100")
    assert found.email == "a@x.example" and found.cadence_name == "C"
    # A mail system that lower-cased the plus address: matched without case.
    assert [e.email for e in store.enrolments_by_token("T-A@X.EXAMPLE100")] == ["a@x.example"]
    assert store.enrolments_by_token("t-nobody") == []
    assert store.enrolments_by_token("t-a@x.example") == []  # a prefix is no match


def test_a_pause_is_logged_with_its_source(store: Store) -> None:
    store.launch("C", "h1", [enrolment("a@x.example")], 1)
    (e,) = store.enrolments()
    assert store.pause(e.id, 5, 900, "auto-reply", source="mailbox imaps://box uid 3")
    paused = store.enrolment(e.id)
    assert paused is not None and paused.paused_until == 900
    (event,) = [x for x in store.events(enrolment_id=e.id) if x.kind == "paused"]
    assert (event.detail, event.source) == ("auto-reply", "mailbox imaps://box uid 3")


# -- the Command Center's reads ------------------------------------------------------------


def _senders(store: Store) -> None:
    """Versions of two reps: S (rep@, the address cased as a file may case it) and O."""
    for h, name, sender in (("hs", "S", "Rep@X.example"), ("ho", "O", "other@x.example")):
        data = json.dumps({"name": name, "sender": {"email": sender}})
        store.save_version(h, name, "source: yaml", data, 0)


def _first_task(email: str, due: int, action: Action) -> NewEnrolment:
    e = enrolment(email, due, task=True)
    first, *rest = e.steps
    return e._replace(steps=(first._replace(action=action), *rest))


def test_upcoming_tasks_are_planned_task_steps_of_active_enrolments(store: Store) -> None:
    _senders(store)
    store.launch("S", "hs", [enrolment("ava@x.example", 100, task=True)], 1)
    store.launch("S", "hs", [_first_task("eli@x.example", 120, Action.EMAIL_TASK)], 1)
    store.launch("O", "ho", [enrolment("bo@x.example", 200, task=True)], 1)
    store.launch("O", "ho", [enrolment("cy@x.example", 150)], 1)  # emails only

    def upcoming(until: int, **where: object) -> list[str]:
        return [r.email for r in store.upcoming_tasks(until, TaskFilter(**where))]  # type: ignore[arg-type]

    assert upcoming(150) == ["ava@x.example", "eli@x.example"]  # bo is later, cy no task
    assert upcoming(300) == ["ava@x.example", "eli@x.example", "bo@x.example"]
    assert upcoming(300, sender="rep@x.example") == ["ava@x.example", "eli@x.example"]
    assert upcoming(300, cadence="O") == ["bo@x.example"]
    assert upcoming(300, action=Action.EMAIL_TASK) == ["eli@x.example"]
    assert upcoming(99) == []
    # Opened by the runner: a task of the queue now, not upcoming; so is a rep's email.
    claim = store.claim(130, 10, 60)
    store.finish(claim.fence, [Outcome(r.id, OutcomeKind.OPENED, 130) for r in claim.rows])
    email_task = next(r for r in claim.rows if r.email == "eli@x.example")
    assert store.schedule_task_email(email_task.id, "s", "b", 140)
    assert upcoming(300) == ["bo@x.example"]
    (bo,) = store.enrolments(email="bo@x.example")
    assert store.pause(bo.id, 131, None, "by hand")
    assert upcoming(300) == []  # a paused enrolment runs nothing


def test_latest_events_are_newest_first_of_some_kinds_and_one_senders_contacts(
    store: Store,
) -> None:
    _senders(store)
    store.launch("S", "hs", [enrolment("ava@x.example"), enrolment("cy@x.example")], 1)
    store.launch("O", "ho", [enrolment("bo@x.example")], 1)
    store.launch("O", "ho", [enrolment("cy@x.example", 300)], 1, allow_overlap=True)
    by_email = {(e.email, e.cadence_name): store.step_runs(e.id)[0] for e in store.enrolments()}
    for at, (email, cadence) in enumerate(
        [("ava@x.example", "S"), ("bo@x.example", "O"), ("cy@x.example", "O")], start=10
    ):
        row = by_email[(email, cadence)]
        # one with its enrolment, one naming only its step run
        store.add_event(EventRecord(at, "sent", email, "", row.enrolment_id, row.id))
        store.add_event(EventRecord(at, "sent", email, "", None, row.id))
    store.record_signal(Signal(SignalKind.REPLY, "cy@x.example", None, 30, "web"))
    store.add_event(EventRecord(5, "sent", "ava@x.example", "", None, None))  # older, added last

    def latest(
        kinds: tuple[str, ...], limit: int = 50, sender: str | None = None
    ) -> list[tuple[int, str, str]]:
        return [
            (e.at_utc, e.kind, e.email) for e in store.latest_events(kinds, limit, sender=sender)
        ]

    everything = latest(("sent", "reply"))
    assert everything[0] == (30, "reply", "cy@x.example")
    assert [at for at, _, _ in everything] == [30, 12, 12, 11, 11, 10, 10, 5]
    assert latest(("reply",)) == [(30, "reply", "cy@x.example")]
    # Same time: the later id first (cy's launch in O came after bo's).
    assert [e for _, _, e in latest(("launched",), limit=2)] == ["cy@x.example", "bo@x.example"]
    assert latest(("sent", "reply"), 3) == everything[:3]
    # rep@ sees its own contacts' events, cy's reply (no enrolment), never cy's O sends.
    assert latest(("sent", "reply"), sender="rep@x.example") == [
        (30, "reply", "cy@x.example"),
        (10, "sent", "ava@x.example"),
        (10, "sent", "ava@x.example"),
        (5, "sent", "ava@x.example"),
    ]
    assert [e for _, _, e in latest(("sent",), sender="other@x.example")] == [
        "cy@x.example",
        "cy@x.example",
        "bo@x.example",
        "bo@x.example",
    ]
    assert latest(("sent",), sender="nobody@x.example") == []


def test_book_sends_never_passes_the_limit(store: Store) -> None:
    assert store.book_sends("dana@x.example", "2026-03-02", 3, 2) == 2
    assert store.book_sends("dana@x.example", "2026-03-02", 3, 2) == 1
    assert store.book_sends("dana@x.example", "2026-03-02", 3, 1) == 0
    assert store.book_sends("dana@x.example", "2026-03-03", 3, 1) == 1


def test_two_concurrent_writers_never_overbook_a_day(store_factory: StoreFactory) -> None:
    granted: list[int] = []

    def book() -> None:
        with store_factory() as own:
            for _ in range(120):
                granted.append(own.book_sends("dana@x.example", "2026-03-02", 150, 1))

    assert together(book, book) == []
    assert sum(granted) == 150 and len(granted) == 240


def test_two_concurrent_claimers_never_share_a_row(store_factory: StoreFactory) -> None:
    with store_factory() as s:
        s.save_version("h1", "C", "", "{}", 0)
        s.launch("C", "h1", [enrolment(f"p{i}@x.example") for i in range(60)], 1)
    taken: list[int] = []

    def claim() -> None:
        with store_factory() as own:
            while rows := own.claim(1000, 7, 60).rows:
                taken.extend(r.id for r in rows)

    assert together(claim, claim) == []
    assert len(taken) == len(set(taken)) == 60


def test_a_url_that_names_no_store_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        open_store("redis://localhost/0")
