"""The PostgreSQL store: what only many processes on one database can break.

Claims that race, signals recorded by another connection, leases and "now" on the
database clock whatever a worker's clock says, atomic daily limits, and the
procrastinate job each due step run becomes (queued once, moved, cancelled when taken).
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadence_engine.engine.store.contract import (
    Action,
    Move,
    NewEnrolment,
    NewStep,
    Outcome,
    OutcomeKind,
    StepState,
)
from cadence_engine.engine.store.postgres import PostgresStore, step_lock
from tests.helpers.threads import together

HASH = "v1"
NOW = 1_800_000_000


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    with PostgresStore(postgres_url, max_connections=8) as s:
        s.save_version(HASH, "outbound", "src", '{"sender": {"email": "rep@x.example"}}', NOW)
        yield s


def enrol(store: PostgresStore, n: int, *, due: int = NOW, prefix: str = "c") -> list[int]:
    steps = (
        NewStep("intro", 0, 1, Action.SEND_EMAIL, "UTC", due, None, "<intro@x>"),
        NewStep("follow", 1, 3, Action.SEND_EMAIL, "UTC", due + 86_400, "intro", "<f@x>"),
    )
    people = [
        NewEnrolment(f"{prefix}{i}@x.example", "{}", f"{prefix}u{i}", f"{prefix}t{i}", steps)
        for i in range(n)
    ]
    result = store.launch("outbound", HASH, people, NOW)
    assert len(result.enrolled) == n
    return [e.id for e in store.enrolments() if e.email.startswith(prefix)]


def jobs(url: str) -> dict[str, tuple[str, int]]:
    """queueing lock → (status, scheduled_at epoch) of the step-run jobs."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT queueing_lock, status, extract(epoch FROM scheduled_at)::bigint "
            "FROM procrastinate_jobs WHERE task_name = 'cadence.run_step' ORDER BY id"
        ).fetchall()
    out: dict[str, tuple[str, int]] = {}
    for lock, status, at in rows:
        if status == "todo" or lock not in out:
            out[lock] = (status, at)
    return out


def test_concurrent_claims_never_take_the_same_row(store: PostgresStore) -> None:
    enrol(store, 60)
    taken: list[list[int]] = []

    def claim() -> None:
        mine: list[int] = []
        while rows := store.claim(NOW, 7, 300).rows:
            mine.extend(r.id for r in rows)
        taken.append(mine)

    assert together(*[claim] * 4) == []
    every = [i for mine in taken for i in mine]
    assert len(every) == len(set(every)) == 60  # only the first steps are reachable


def test_fences_strictly_increase_across_connections(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as a, PostgresStore(postgres_url) as b:
        fences = [s.claim(NOW, 1, 60).fence for s in (a, b, a, b, b, a)]
    assert fences == sorted(fences) and len(set(fences)) == len(fences)


def test_a_signal_from_another_process_stops_the_send(
    store: PostgresStore, postgres_url: str
) -> None:
    enrol(store, 2)
    claim = store.claim(NOW, 10, 300)
    victim = claim.rows[0]
    # Another process (its own store on the same database) records an unsubscribe.
    with PostgresStore(postgres_url) as other:
        assert other.suppress(victim.email, "unsubscribe", NOW)
    sending = store.begin_sending(claim.fence, [r.id for r in claim.rows])
    assert sending == {claim.rows[1].id}
    row = store.step_run(victim.id)
    assert row is not None and row.state is StepState.CANCELLED


def test_last_check_sees_a_signal_committed_after_sending(
    store: PostgresStore, postgres_url: str
) -> None:
    enrol(store, 1)
    claim = store.claim(NOW, 10, 300)
    ids = store.begin_sending(claim.fence, [r.id for r in claim.rows])
    with PostgresStore(postgres_url) as other:
        other.suppress(claim.rows[0].email, "bounce", NOW)
    assert store.stopped(ids) == {claim.rows[0].id: OutcomeKind.CANCELLED}


def test_leases_follow_the_database_clock_not_the_worker(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrol(store, 2)
    database_now = store.clock()
    real = time.time
    # This worker's clock is five hours ahead: the store must not care.
    monkeypatch.setattr(time, "time", lambda: real() + 5 * 3600)
    assert abs(store.clock() - database_now) < 3600
    claim = store.claim(NOW, 10, 300)
    for row in claim.rows:
        assert row.lease_until is not None
        assert database_now < row.lease_until < database_now + 3600
    # A second worker whose clock is hours behind does not see the lease as over.
    monkeypatch.setattr(time, "time", lambda: real() - 5 * 3600)
    assert store.claim(NOW, 10, 300).rows == ()


def test_expired_leases_become_planned_or_unknown(store: PostgresStore) -> None:
    enrol(store, 2)
    claim = store.claim(NOW, 10, 0.0)  # a lease already over by the database clock
    store.begin_sending(claim.fence, [claim.rows[0].id])
    assert store.sweep(NOW) == 2
    first = store.step_run(claim.rows[0].id)
    second = store.step_run(claim.rows[1].id)
    assert first is not None and first.state is StepState.UNKNOWN
    assert second is not None and second.state is StepState.PLANNED
    assert [e.kind for e in store.events(step_run_id=first.id)] == ["unknown"]
    # The row given back is due again, under a new fence; the finish of the old one is void.
    again = store.claim(NOW, 10, 300)
    assert [r.id for r in again.rows] == [second.id] and again.fence > claim.fence
    store.finish(claim.fence, [Outcome(second.id, OutcomeKind.SENT, NOW)])
    row = store.step_run(second.id)
    assert row is not None and row.state is StepState.CLAIMED


_EXAMPLES = itertools.count()


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    limit=st.integers(0, 30),
    wants=st.lists(st.integers(0, 12), min_size=1, max_size=6),
)
def test_daily_limit_is_never_overbooked_by_concurrent_writers(
    store: PostgresStore, limit: int, wants: list[int]
) -> None:
    # The store outlives the examples: each one books for a sender of its own (two
    # examples with the same limit and sum once shared a sender, the second found the
    # day already full).
    day = f"2030-01-{(limit % 28) + 1:02d}"
    sender = f"s{next(_EXAMPLES)}@x.example"
    granted: list[int] = []
    lock = threading.Lock()

    def book(wanted: int) -> None:
        got = store.book_sends(sender, day, limit, wanted)
        with lock:
            granted.append(got)

    assert together(*(functools.partial(book, w) for w in wants)) == []
    assert sum(granted) == min(limit, sum(wants))
    assert all(0 <= g <= w for g, w in zip(sorted(granted), sorted(wants), strict=False))


def test_each_due_step_is_one_job_queued_once_and_moved(
    store: PostgresStore, postgres_url: str
) -> None:
    (enrolment,) = enrol(store, 1)
    intro, follow = store.step_runs(enrolment)
    assert jobs(postgres_url) == {step_lock(intro.id): ("todo", NOW)}
    # The same contact launched again: not enrolled, not queued twice.
    enrol_again = store.launch(
        "outbound",
        HASH,
        [NewEnrolment("c0@x.example", "{}", "other", "other-t", ())],
        NOW,
    )
    assert enrol_again.already_enrolled == ("c0@x.example",)
    assert jobs(postgres_url) == {step_lock(intro.id): ("todo", NOW)}
    # Rescheduling (a send window) moves the job with the row.
    claim = store.claim(NOW, 10, 300)
    assert jobs(postgres_url) == {}  # taken by the claim: its job is gone
    store.finish(
        claim.fence,
        [Outcome(intro.id, OutcomeKind.RESCHEDULED, NOW, "send window", retry_utc=NOW + 600)],
    )
    assert jobs(postgres_url)[step_lock(intro.id)] == ("todo", NOW + 600)
    store.move_steps([Move(intro.id, NOW + 900, NOW + 900, "by hand")], NOW)
    assert jobs(postgres_url)[step_lock(intro.id)] == ("todo", NOW + 900)
    # Sent: the next step run of the enrolment becomes the one job, at its own time.
    claim = store.claim(NOW + 900, 10, 300)
    store.begin_sending(claim.fence, [intro.id])
    store.finish(claim.fence, [Outcome(intro.id, OutcomeKind.SENT, NOW + 900, "250 ok")])
    todo = {k: v for k, v in jobs(postgres_url).items() if v[0] == "todo"}
    assert todo == {step_lock(follow.id): ("todo", follow.due_utc)}


def test_launch_defers_jobs_in_its_own_transaction(
    store: PostgresStore, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A launch that fails after its rows were written leaves neither rows nor jobs."""
    from cadence_engine.engine.store import postgres as pg

    def fail(*_: Any) -> None:
        raise RuntimeError("defer failed")

    monkeypatch.setattr(pg._JobsManager, "defer", fail)
    with pytest.raises(RuntimeError):
        enrol(store, 3)
    assert store.enrolments() == []
    assert jobs(postgres_url) == {}


def test_the_event_log_is_append_only(store: PostgresStore, postgres_url: str) -> None:
    enrol(store, 1)
    with psycopg.connect(postgres_url) as conn, pytest.raises(psycopg.errors.RaiseException):
        conn.execute("DELETE FROM events")


def test_an_unreachable_server_is_a_usage_error() -> None:
    from cadence_engine.engine.errors import UsageError

    with pytest.raises(UsageError, match=r"cannot connect to PostgreSQL at postgresql://"):
        PostgresStore("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=1")


def test_a_batch_belongs_to_its_thread(store: PostgresStore, postgres_url: str) -> None:
    # `cadence worker` runs several passes at once on one store, each on its own thread:
    # one pass's batch (a chunk's record with the next chunk's `sending`) must neither
    # take in nor hold back another thread's writes.
    a, b = (store.step_runs(e)[0].id for e in enrol(store, 2))
    fence = store.claim(NOW, 10, 60).fence
    inside, written = threading.Event(), threading.Event()

    def other_thread() -> None:
        inside.wait(10)
        assert store.begin_sending(fence, [b]) == {b}  # its own transaction, committed
        written.set()

    def state(step_run_id: int) -> str:
        with psycopg.connect(postgres_url) as conn:
            (found,) = conn.execute(
                "SELECT state FROM step_runs WHERE id = %s", (step_run_id,)
            ).fetchone()
        return str(found)

    worker = threading.Thread(target=other_thread)
    worker.start()
    with store.batch():
        assert store.begin_sending(fence, [a]) == {a}
        inside.set()
        assert written.wait(10)
        assert (state(a), state(b)) == ("claimed", "sending")  # b's commit did not wait
    worker.join(10)
    assert (state(a), state(b)) == ("sending", "sending")


def _sending_in_a_thread(store: PostgresStore) -> tuple[int, threading.Thread, list[Any]]:
    """One enrolment claimed, and a thread that commits its `sending` once started:
    (the enrolment, the thread, what begin_sending returned or raised)."""
    from cadence_engine.engine.errors import CadenceError

    (enrolment,) = enrol(store, 1)
    row = store.step_runs(enrolment)[0].id
    fence = store.claim(NOW, 10, 60).fence
    result: list[Any] = []

    def sending() -> None:
        try:
            result.append(store.begin_sending(fence, [row]))
        except CadenceError as exc:
            result.append(exc)

    return enrolment, threading.Thread(target=sending), result


def test_a_signal_ending_an_enrolment_never_deadlocks_against_its_sending_commit(
    store: PostgresStore, postgres_url: str
) -> None:
    # A signal locks the enrolment, then its step runs (end_enrolments); the runner's
    # `sending` commit must take the same locks in the same order, or each waits for
    # the other and PostgreSQL aborts one of them.
    enrolment, runner, result = _sending_in_a_thread(store)
    with psycopg.connect(postgres_url) as signal:
        signal.execute("SET deadlock_timeout = '100ms'")
        signal.execute(
            "UPDATE enrolments SET state = 'replied' WHERE id = %s", (enrolment,)
        )  # the signal's first lock
        runner.start()
        time.sleep(0.5)  # the runner now waits on the enrolment (or holds the step run)
        signal.execute(
            "UPDATE step_runs SET state = 'cancelled', answer = 'stopped: replied' "
            "WHERE enrolment_id = %s AND state IN ('planned', 'claimed', 'open')",
            (enrolment,),
        )
        signal.commit()
        runner.join(10)
    assert result == [set()]  # the signal won; nothing of this enrolment is sent
    assert store.step_runs(enrolment)[0].state is StepState.CANCELLED


def test_a_transaction_postgres_aborts_is_reported_as_such(
    store: PostgresStore, postgres_url: str
) -> None:
    # Another writer taking the locks in the other order: PostgreSQL breaks the deadlock
    # by aborting the store's transaction (its deadlock_timeout, 1 s, runs out first).
    from cadence_engine.engine.errors import CadenceError

    enrolment, runner, result = _sending_in_a_thread(store)
    row = store.step_runs(enrolment)[0].id
    with psycopg.connect(postgres_url) as other:
        other.execute("SET deadlock_timeout = '10s'")
        other.execute("SELECT 1 FROM step_runs WHERE id = %s FOR UPDATE", (row,))
        runner.start()
        time.sleep(0.3)  # the store holds the enrolment and waits for the step run
        other.execute("UPDATE enrolments SET state = 'replied' WHERE id = %s", (enrolment,))
        runner.join(10)
    (error,) = result
    assert isinstance(error, CadenceError)
    assert "aborted a transaction that conflicted with another writer" in error.message
    assert "deadlock detected" in error.message and "run the command again" in str(error.hint)


def test_a_refused_connection_is_one_line_with_its_reason() -> None:
    from tests.helpers.runner_env import cadence_cmd

    url = "postgresql://postgres@127.0.0.1:1/a1"
    result = cadence_cmd("status", "--db", url)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: cannot connect to PostgreSQL at {url}: Connection refused",
        "  hint: check CADENCE_DB / --db (host, port, database, user, password) and that the "
        "server accepts connections",
    ]
