"""The store contract on PostgreSQL (psycopg 3, a connection pool), with procrastinate jobs.

Any number of processes on any number of machines share one database:

- Every method is one transaction on a connection from the pool.
- "Now" for leases is the database clock (`clock_timestamp()`), never a worker's, so
  machines with skewed clocks agree on which lease ran out.
- The claim locks what it takes with `FOR UPDATE SKIP LOCKED`: concurrent claims never
  wait on each other and never take the same row; fences come from one sequence.
- `begin_sending` re-checks, under the row locks, the enrolment state and the
  suppressions that any process may have written since the claim.
- `book_sends` locks the sender's day row, so two workers never overbook it.
- The work of the step runs is distributed by procrastinate: whenever an enrolment's next
  step run is `planned` (after a launch, a finished step, a settled task, a move, a
  resume, a resolve, a released claim) one job, queueing-locked by the step run id, is
  deferred at its due time on the same connection, in the same transaction; a job already
  waiting is moved to the new time instead. Claiming a row removes its waiting job.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from ...errors import CadenceError, NotFound, UsageError
from .. import filtered
from ..contract import (
    NO_FILTER,
    OUTCOME_EVENT,
    OUTCOME_STATE,
    SETTLED,
    Claim,
    Cursor,
    Ending,
    EnrolmentRecord,
    EnrolmentState,
    EventRecord,
    LaunchResult,
    Move,
    NewEnrolment,
    Outcome,
    OutcomeKind,
    Signal,
    SignalKind,
    StepRow,
    StepState,
    TaskFilter,
    VersionStatus,
)
from .migrations import MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

INSTALL_HINT = "install the PostgreSQL extra: pip install 'cadence-engine[postgres]'"
# The one procrastinate task a due step run becomes, and its queueing lock.
STEP_TASK = "cadence.run_step"
QUEUE = "cadence"
MIGRATION_LOCK = 0x63616465  # pg_advisory_xact_lock key: one migrating process at a time
LAUNCH_LOCK = 0x6C61756E  # launches are serialised: the cross-cadence overlap check holds

_SETTLED = "(" + ",".join(f"'{s}'" for s in sorted(SETTLED)) + ")"
_RUNNING = "('active', 'paused')"
_END_STATES = frozenset(EnrolmentState) - {EnrolmentState.ACTIVE, EnrolmentState.PAUSED}


def _epoch(column: str) -> str:
    return f"extract(epoch FROM {column})::bigint"


def step_lock(step_run_id: int) -> str:
    """The procrastinate queueing lock of a step run's job: never queued twice."""
    return f"cadence-step-{step_run_id}"


_ROW_SELECT = f"""
SELECT sr.id, sr.enrolment_id, e.cadence_name, e.cadence_hash, e.email, e.contact::text,
       e.uid, e.unsubscribe_token, e.state,
       EXISTS (SELECT 1 FROM suppressions s WHERE s.email = e.email),
       sr.step_id, sr.step_index, sr.day, sr.action, sr.zone, {_epoch("sr.due_at")},
       {_epoch("sr.planned_at")}, sr.thread_step_id, sr.message_id, sr.state, sr.fence,
       sr.attempts, sr.by_hand, sr.subject, sr.body, {_epoch("sr.sent_at")},
       {_epoch("sr.done_at")}, sr.answer,
       -- an email task marked done was sent by the rep; a skipped one never went out
       {_epoch("COALESCE(t.sent_at, CASE WHEN t.state = 'done' THEN t.done_at END)")},
       CASE WHEN t.by_hand THEN t.subject END, extract(epoch FROM sr.lease_until)::float8,
       sr.unsubscribe_url
FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id
LEFT JOIN step_runs t ON t.enrolment_id = sr.enrolment_id AND t.step_id = sr.thread_step_id
"""

_ENROLMENT = f"""
SELECT id, uid, cadence_name, cadence_hash, email, contact::text, unsubscribe_token, state,
       success, {_epoch("launched_at")}, {_epoch("ended_at")}, {_epoch("paused_at")},
       {_epoch("paused_until")}
FROM enrolments
"""

# Cadence versions whose sender is the given (lower-cased) address: a rep's own cadences.
_OF_SENDER = "SELECT hash FROM cadence_versions WHERE sender = %s"

_EVENT = (
    "INSERT INTO events (at, kind, email, enrolment_id, step_run_id, detail, source) "
    "VALUES (to_timestamp(%s), %s, %s, %s, %s, %s, %s)"
)

# Step runs of one version by what `status` shows (see VersionStatus).
_STEP_COUNTS = f"""
SELECT CASE
    WHEN sr.state IN ('claimed', 'sending') AND sr.lease_until < clock_timestamp() THEN
        CASE sr.state WHEN 'sending' THEN 'unknown' ELSE 'planned:due' END
    WHEN sr.state = 'planned' AND sr.attempts > 0 THEN 'retrying'
    ELSE sr.state END || CASE
    WHEN sr.state != 'planned' OR sr.due_at > to_timestamp(%(now)s) OR e.state != 'active'
        THEN ''
    WHEN EXISTS (
        SELECT 1 FROM step_runs p
        WHERE p.enrolment_id = sr.enrolment_id AND p.step_index < sr.step_index
          AND (p.state IN ('open', 'unknown')
               OR (p.state = 'sending' AND p.lease_until < clock_timestamp()))) THEN ':held'
    WHEN EXISTS (
        SELECT 1 FROM step_runs p
        WHERE p.enrolment_id = sr.enrolment_id AND p.step_index < sr.step_index
          AND p.state NOT IN {_SETTLED}) THEN ':queued'
    ELSE ':due' END,
    count(*)
FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id
WHERE e.cadence_hash = %(hash)s GROUP BY 1
"""


def _filtered(query: str, args: list[Any], where: TaskFilter) -> tuple[str, list[Any]]:
    return filtered(query, args, where, mark="%s", of_sender=_OF_SENDER, due="sr.due_at")


_row = StepRow.from_columns


def _enrolment(r: Sequence[Any]) -> EnrolmentRecord:
    return EnrolmentRecord(
        id=r[0],
        uid=r[1],
        cadence_name=r[2],
        cadence_hash=r[3],
        email=r[4],
        contact=r[5],
        unsubscribe_token=r[6],
        state=EnrolmentState(r[7]),
        success=bool(r[8]),
        launched_utc=r[9],
        ended_utc=r[10],
        paused_utc=r[11],
        paused_until=r[12],
    )


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def redact(url: str) -> str:
    """A store URL fit to print: a PostgreSQL URL without its password, a path as given."""
    from urllib.parse import urlsplit, urlunsplit

    if not url.startswith(("postgresql://", "postgres://")):
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = (f"{parts.username}@" if parts.username else "") + host
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:
        return "the PostgreSQL URL"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def connection_reason(exc: BaseException) -> str:
    """Why a connection failed or broke, in one line: libpq's own reason ("Connection
    refused", 'password authentication failed for user "x"'), without the server address
    the message around it names already, nor libpq's indented advice lines."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    reason = lines[0].rsplit(" failed: ", 1)[-1]
    reason = reason.removeprefix("FATAL:").strip()
    return " ".join(reason.split())


class ConnectionLost(CadenceError):
    """PostgreSQL went out of reach during an operation (the server restarted, the network
    broke, no connection could be had in time): nothing of that operation was kept."""

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


def is_lost_connection(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error that caused it, is PostgreSQL out of reach: a connection
    that could not be made or broke (psycopg's OperationalError, which procrastinate wraps
    in its ConnectorException), not a transaction that lost a conflict (SQLSTATE class 40)."""
    import psycopg

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConnectionLost):
            return True
        if isinstance(exc, psycopg.OperationalError) and not (exc.sqlstate or "").startswith("40"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class PostgresStore:
    """The store contract on PostgreSQL. Thread-safe: every call takes a pooled connection."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int | None = None,
        wait: float = 60.0,
        named: str = "CADENCE_DB / --db",
    ) -> None:
        """`wait`: seconds an operation waits for a pooled connection before it fails as a
        lost connection; `named`: where the user gave `url` (for the hint of an error)."""
        try:
            import psycopg_pool
        except ImportError as exc:
            raise UsageError(
                f"CADENCE_DB is a PostgreSQL URL but {exc.name} is not installed",
                hint=INSTALL_HINT,
            ) from exc
        import psycopg

        self.url = url
        check = (
            f"check {named} (host, port, database, user, password) and that the server "
            "accepts connections"
        )
        try:  # one direct connection first: a wrong URL fails at once, with the reason
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.Error as exc:
            raise UsageError(
                f"cannot connect to PostgreSQL at {redact(url)}: {connection_reason(exc)}",
                hint=check,
            ) from exc
        # The connection of the calling thread's `batch`: one store serves the worker's
        # concurrent runs, each on a thread of its own, and one run's batch must not
        # take in another's writes.
        self._batches = threading.local()
        size = max_connections or int(os.environ.get("CADENCE_PG_POOL", "4"))
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = (
            psycopg_pool.ConnectionPool(
                url,
                min_size=1,
                max_size=max(1, size),
                open=False,
                timeout=wait,
                check=psycopg_pool.ConnectionPool.check_connection,
                kwargs={"application_name": "cadence"},
            )
        )
        try:
            self._pool.open(wait=True, timeout=30.0)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            raise UsageError(f"cannot connect to PostgreSQL at {redact(url)}", hint=check) from exc
        self._jobs = _jobs_manager()
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    # -- life cycle -----------------------------------------------------------------------

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _batch(self) -> psycopg.Connection[Any] | None:
        conn: psycopg.Connection[Any] | None = getattr(self._batches, "conn", None)
        return conn

    @contextmanager
    def batch(self) -> Iterator[None]:
        if self._batch is not None:
            yield
            return
        with self._tx() as conn:
            self._batches.conn = conn
            try:
                yield
            finally:
                self._batches.conn = None

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction: committed when the block ends, rolled back on an error;
        inside `batch`, its connection and transaction."""
        import psycopg

        if self._batch is not None:
            yield self._batch
            return
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            where = redact(self.url)
            hint = "nothing of the failed operation was kept; run the command again"
            reason = connection_reason(exc)
            if (exc.sqlstate or "").startswith("40"):  # class 40: deadlock, serialization
                raise CadenceError(
                    f"PostgreSQL at {where} aborted a transaction that conflicted with "
                    f"another writer: {reason}",
                    hint=hint,
                ) from exc
            raise ConnectionLost(
                f"lost the connection to PostgreSQL at {where}: {reason}", reason=reason, hint=hint
            ) from exc

    def _migrate(self) -> None:
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS cadence_schema (version integer NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            found = conn.execute("SELECT max(version) FROM cadence_schema").fetchone()
            current = int(found[0]) if found and found[0] is not None else 0
            if current > SCHEMA_VERSION:
                raise UsageError(
                    f"the PostgreSQL store is at schema version {current}, newer than this "
                    f"cadence-engine ({SCHEMA_VERSION})",
                    hint="upgrade cadence-engine on this machine",
                )
            for number, script in MIGRATIONS:
                if number > current:
                    conn.execute(script.encode())
                    conn.execute("INSERT INTO cadence_schema (version) VALUES (%s)", (number,))
            regclass = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
            if regclass is None or regclass[0] is None:
                from procrastinate.schema import SchemaManager

                conn.execute(SchemaManager.get_schema().encode())

    def schema_version(self) -> int:
        with self._tx() as conn:
            found = conn.execute("SELECT max(version) FROM cadence_schema").fetchone()
        return int(found[0]) if found and found[0] is not None else 0

    # -- procrastinate jobs ---------------------------------------------------------------

    def _wake(self, conn: psycopg.Connection[Any], enrolment_ids: Iterable[int]) -> None:
        """Give each enrolment's next step run, when it is `planned`, one job at its due
        time: move the job already waiting, or defer a new one (same transaction)."""
        ids = sorted(set(enrolment_ids))
        if not ids:
            return
        rows = conn.execute(
            f"""
            SELECT n.id, n.due_at FROM (
                SELECT DISTINCT ON (enrolment_id) id, state, due_at FROM step_runs
                WHERE enrolment_id = ANY(%s) AND state NOT IN {_SETTLED}
                ORDER BY enrolment_id, step_index) n
            JOIN step_runs sr ON sr.id = n.id
            WHERE n.state = 'planned' ORDER BY n.id FOR UPDATE OF sr""",
            (ids,),
        ).fetchall()
        if not rows:
            return
        due = {int(r[0]): r[1] for r in rows}
        moved = conn.execute(
            "UPDATE procrastinate_jobs j SET scheduled_at = w.due FROM "
            "unnest(%s::text[], %s::timestamptz[]) AS w(lock, due) "
            "WHERE j.queueing_lock = w.lock AND j.status = 'todo' RETURNING j.queueing_lock",
            ([step_lock(i) for i in due], list(due.values())),
        ).fetchall()
        have = {str(r[0]) for r in moved}
        new = [(i, at) for i, at in due.items() if step_lock(i) not in have]
        if new:
            self._jobs.defer(conn, new)

    def wake_all(self) -> None:
        """Defer (or move) the job of every running enrolment's next planned step run."""
        with self._tx() as conn:
            ids = conn.execute("SELECT id FROM enrolments WHERE state = 'active'").fetchall()
            self._wake(conn, (int(r[0]) for r in ids))

    def _unjob(self, conn: psycopg.Connection[Any], step_run_ids: Sequence[int]) -> None:
        """The waiting jobs of rows just claimed: their work is taken, they need not run."""
        if step_run_ids:
            conn.execute(
                "DELETE FROM procrastinate_jobs WHERE status = 'todo' AND queueing_lock = ANY(%s)",
                ([step_lock(i) for i in step_run_ids],),
            )

    # -- the work queue -------------------------------------------------------------------

    def clock(self) -> float:
        with self._tx() as conn:
            found = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
        assert found is not None
        return float(found[0])

    def _expire_leases(self, conn: psycopg.Connection[Any], now: int) -> int:
        # Claimed but never marked sending: nothing was handed over, so it is due again.
        released = conn.execute(
            "UPDATE step_runs SET state = 'planned', fence = NULL, lease_until = NULL "
            "WHERE state = 'claimed' AND lease_until < clock_timestamp() "
            "RETURNING enrolment_id"
        ).fetchall()
        # In `sending` when its runner died: it may have gone out. Never resent
        # automatically; an operator settles it with `cadence resolve`.
        expired = conn.execute(
            "UPDATE step_runs sr SET state = 'unknown', "
            "answer = 'runner stopped while sending' FROM enrolments e "
            "WHERE e.id = sr.enrolment_id AND sr.state = 'sending' "
            "AND sr.lease_until < clock_timestamp() "
            "RETURNING sr.id, sr.enrolment_id, e.email, sr.message_id"
        ).fetchall()
        if expired:
            with conn.cursor() as cur:
                cur.executemany(
                    _EVENT, [(now, "unknown", r[2], r[1], r[0], r[3], "runner") for r in expired]
                )
        self._wake(conn, (r[0] for r in released))
        return len(released) + len(expired)

    def sweep(self, now: int) -> int:
        """Expire ended leases (the periodic sweep): `claimed` → `planned`, `sending` →
        `unknown`; returns how many rows changed."""
        with self._tx() as conn:
            return self._expire_leases(conn, now)

    def claim(self, now: int, limit: int, lease_seconds: float) -> Claim:
        with self._tx() as conn:
            self._expire_leases(conn, now)
            found = conn.execute("SELECT nextval('cadence_fences')").fetchone()
            assert found is not None
            fence = int(found[0])
            taken = conn.execute(
                f"""
                UPDATE step_runs SET state = 'claimed', fence = %(fence)s,
                    lease_until = clock_timestamp() + make_interval(secs => %(lease)s)
                WHERE id IN (
                    SELECT sr.id FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id
                    WHERE sr.state = 'planned' AND sr.due_at <= to_timestamp(%(now)s)
                      AND e.state = 'active'
                      AND NOT EXISTS (
                        SELECT 1 FROM step_runs p
                        WHERE p.enrolment_id = sr.enrolment_id
                          AND p.step_index < sr.step_index AND p.state NOT IN {_SETTLED})
                    ORDER BY sr.due_at, sr.id LIMIT %(limit)s
                    FOR UPDATE OF sr SKIP LOCKED)
                RETURNING id""",
                {"fence": fence, "lease": float(lease_seconds), "now": now, "limit": limit},
            ).fetchall()
            ids = [int(r[0]) for r in taken]
            self._unjob(conn, ids)
            rows = [
                _row(r)
                for r in conn.execute(
                    _ROW_SELECT + " WHERE sr.id = ANY(%s) ORDER BY sr.due_at, sr.id", (ids,)
                ).fetchall()
            ]
        return Claim(fence=fence, rows=tuple(rows))

    def _stopped(self, conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, OutcomeKind]:
        out: dict[int, OutcomeKind] = {}
        for step_run_id, state in conn.execute(
            "SELECT sr.id, e.state FROM step_runs sr JOIN enrolments e "
            "ON e.id = sr.enrolment_id WHERE sr.id = ANY(%s) AND (e.state != 'active' "
            "OR sr.state = 'cancelled' "
            "OR EXISTS (SELECT 1 FROM suppressions s WHERE s.email = e.email))",
            (ids,),
        ).fetchall():
            paused = state == EnrolmentState.PAUSED
            out[int(step_run_id)] = OutcomeKind.RELEASED if paused else OutcomeKind.CANCELLED
        return out

    def begin_sending(self, fence: int, ids: Iterable[int]) -> set[int]:
        wanted = list(ids)
        with self._tx() as conn:
            # Lock the enrolments, then the rows: a signal committed by any process before
            # this point is seen below; one committed after waits for this commit and is
            # then caught by the runner's last check (`stopped`). Enrolments first, as a
            # signal ending one takes them (`end_enrolments`), else each would wait for
            # the other.
            conn.execute(
                "SELECT 1 FROM enrolments WHERE id IN "
                "(SELECT enrolment_id FROM step_runs WHERE id = ANY(%s)) ORDER BY id FOR UPDATE",
                (wanted,),
            )
            conn.execute(
                "SELECT 1 FROM step_runs WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (wanted,)
            )
            stopped = self._stopped(conn, wanted)
            cancel = [i for i, k in stopped.items() if k is OutcomeKind.CANCELLED]
            release = [i for i, k in stopped.items() if k is OutcomeKind.RELEASED]
            conn.execute(
                "UPDATE step_runs SET state = 'cancelled', answer = 'stopped by a signal', "
                "lease_until = NULL WHERE id = ANY(%s) AND fence = %s AND state = 'claimed'",
                (cancel, fence),
            )
            conn.execute(
                "UPDATE step_runs SET state = 'planned', fence = NULL, lease_until = NULL "
                "WHERE id = ANY(%s) AND fence = %s AND state = 'claimed'",
                (release, fence),
            )
            ours = conn.execute(
                "UPDATE step_runs SET state = 'sending' "
                "WHERE id = ANY(%s) AND fence = %s AND state = 'claimed' RETURNING id",
                ([i for i in wanted if i not in stopped], fence),
            ).fetchall()
        return {int(r[0]) for r in ours}

    def stopped(self, ids: Iterable[int]) -> dict[int, OutcomeKind]:
        with self._tx() as conn:
            return self._stopped(conn, list(ids))

    def finish(self, fence: int, outcomes: Iterable[Outcome]) -> None:
        todo = list(outcomes)
        if not todo:
            return
        with self._tx() as conn:
            info = {
                int(r[0]): (int(r[1]), r[2], r[3], r[4])
                for r in conn.execute(
                    "SELECT sr.id, sr.enrolment_id, e.email, sr.message_id, sr.action "
                    "FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id "
                    "WHERE sr.id = ANY(%s) AND sr.fence = %s "
                    "AND sr.state IN ('claimed', 'sending', 'unknown') ORDER BY sr.id "
                    "FOR UPDATE OF sr",
                    ([o.step_run_id for o in todo], fence),
                ).fetchall()
            }
            events: list[tuple[Any, ...]] = []
            updates: list[tuple[Any, ...]] = []
            moved: list[Outcome] = []
            for o in todo:
                if o.step_run_id not in info:  # no longer ours: another claim took it
                    continue
                enrolment_id, email, message_id, action = info[o.step_run_id]
                state = str(OUTCOME_STATE[o.kind])
                back = o.kind in (OutcomeKind.RETRY, OutcomeKind.RESCHEDULED, OutcomeKind.RELEASED)
                updates.append(
                    (
                        state,
                        o.at_utc if o.kind is OutcomeKind.SENT else None,
                        o.retry_utc if o.kind is not OutcomeKind.RELEASED else None,
                        int(o.kind is OutcomeKind.RETRY),
                        back,
                        back and o.kind is not OutcomeKind.RETRY,  # keep the last answer
                        o.answer or None,
                        o.unsubscribe_url,
                        o.step_run_id,
                    )
                )
                if o.kind is OutcomeKind.RELEASED:
                    continue
                if o.kind is OutcomeKind.SENT:
                    detail = message_id
                elif o.kind is OutcomeKind.OPENED:
                    detail = action
                else:
                    detail = o.answer
                kind = OUTCOME_EVENT[o.kind]
                events.append(
                    (o.at_utc, kind, email, enrolment_id, o.step_run_id, detail, "runner")
                )
                if o.followers:
                    moved.append(o)
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE step_runs SET state = %s, "
                    "sent_at = coalesce(to_timestamp(%s), sent_at), "
                    "due_at = coalesce(to_timestamp(%s), due_at), attempts = attempts + %s, "
                    "fence = CASE WHEN %s THEN NULL ELSE fence END, lease_until = NULL, "
                    "answer = CASE WHEN %s THEN answer ELSE %s END, "
                    "unsubscribe_url = coalesce(%s, unsubscribe_url) WHERE id = %s",
                    updates,
                )
                cur.executemany(_EVENT, events)
            for o in moved:
                self._move(conn, o.followers, o.at_utc, source="runner")
            self._wake(conn, (v[0] for v in info.values()))

    def release(self, fence: int) -> int:
        with self._tx() as conn:
            back = conn.execute(
                "UPDATE step_runs SET state = 'planned', fence = NULL, lease_until = NULL "
                "WHERE fence = %s AND state = 'claimed' RETURNING enrolment_id",
                (fence,),
            ).fetchall()
            self._wake(conn, (r[0] for r in back))
        return len(back)

    def book_sends(self, sender: str, day: str, limit: int, wanted: int) -> int:
        if wanted <= 0:
            return 0
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO sender_days VALUES (%s, %s, 0) ON CONFLICT (sender, day) DO NOTHING",
                (sender, day),
            )
            # The row lock makes read-then-add one step for every concurrent writer.
            found = conn.execute(
                "SELECT sent FROM sender_days WHERE sender = %s AND day = %s FOR UPDATE",
                (sender, day),
            ).fetchone()
            assert found is not None
            granted = max(0, min(wanted, limit - int(found[0])))
            if granted:
                conn.execute(
                    "UPDATE sender_days SET sent = sent + %s WHERE sender = %s AND day = %s",
                    (granted, sender, day),
                )
        return granted

    def take_task_email(
        self, step_run_id: int, subject: str, body: str, lease_seconds: float
    ) -> int | None:
        with self._tx() as conn:
            found = conn.execute("SELECT nextval('cadence_fences')").fetchone()
            assert found is not None
            fence = int(found[0])
            taken = conn.execute(
                "UPDATE step_runs SET state = 'claimed', fence = %s, "
                "lease_until = clock_timestamp() + make_interval(secs => %s), "
                "by_hand = true, subject = %s, body = %s "
                "WHERE id = %s AND state = 'open' AND action = 'email task'",
                (fence, float(lease_seconds), subject, body, step_run_id),
            ).rowcount
        return fence if taken else None

    # -- versions and launch --------------------------------------------------------------

    def save_version(self, cadence_hash: str, name: str, source: str, data: str, now: int) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO cadence_versions (hash, name, source, data, created_at) "
                "VALUES (%s, %s, %s, %s, to_timestamp(%s)) ON CONFLICT (hash) DO NOTHING",
                (cadence_hash, name, source, data, now),
            )

    def version(self, cadence_hash: str) -> tuple[str, str]:
        with self._tx() as conn:
            found = conn.execute(
                "SELECT data::text, source FROM cadence_versions WHERE hash = %s",
                (cadence_hash,),
            ).fetchone()
        if found is None:
            raise NotFound(f"cadence version {cadence_hash} is not in the state store")
        return str(found[0]), str(found[1])

    def versions(self) -> dict[str, tuple[str, str]]:
        with self._tx() as conn:
            rows = conn.execute("SELECT hash, name, data::text FROM cadence_versions").fetchall()
        return {h: (n, d) for h, n, d in rows}

    def launch(
        self,
        cadence_name: str,
        cadence_hash: str,
        enrolments: Iterable[NewEnrolment],
        now: int,
        *,
        allow_overlap: bool = False,
    ) -> LaunchResult:
        new = list({e.email: e for e in reversed(list(enrolments))}.values())[::-1]
        emails = [e.email for e in new]
        enrolled: list[str] = []
        already: list[str] = []
        suppressed: list[str] = []
        overlapping: list[tuple[str, str]] = []
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LAUNCH_LOCK,))
            blocked = {
                str(r[0])
                for r in conn.execute(
                    "SELECT email FROM suppressions WHERE email = ANY(%s)", (emails,)
                ).fetchall()
            }
            running: dict[str, str] = {}
            for email, name in conn.execute(
                f"SELECT email, cadence_name FROM enrolments WHERE email = ANY(%s) "
                f"AND state IN {_RUNNING} ORDER BY id DESC",
                (emails,),
            ).fetchall():
                if name == cadence_name or email not in running:
                    running[email] = name
            go: list[NewEnrolment] = []
            for e in new:
                if e.email in blocked:
                    suppressed.append(e.email)
                elif running.get(e.email) == cadence_name:
                    already.append(e.email)
                elif e.email in running and not allow_overlap:
                    overlapping.append((e.email, running[e.email]))
                else:
                    go.append(e)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO enrolments (uid, cadence_name, cadence_hash, email, contact, "
                    "unsubscribe_token, launched_at) VALUES (%s, %s, %s, %s, %s, %s, "
                    "to_timestamp(%s)) ON CONFLICT (cadence_name, email) "
                    f"WHERE state IN {_RUNNING} DO NOTHING RETURNING id",
                    [
                        (
                            e.uid,
                            cadence_name,
                            cadence_hash,
                            e.email,
                            e.contact,
                            e.unsubscribe_token,
                            now,
                        )
                        for e in go
                    ],
                    returning=True,
                )
                ids: list[int | None] = []
                while go:
                    got = cur.fetchone()
                    ids.append(int(got[0]) if got is not None else None)
                    if not cur.nextset():
                        break
            made: list[tuple[int, NewEnrolment]] = []
            for e, enrolment_id in zip(go, ids, strict=True):
                if enrolment_id is None:
                    already.append(e.email)
                else:
                    made.append((enrolment_id, e))
                    enrolled.append(e.email)
            with conn.cursor().copy(
                "COPY step_runs (enrolment_id, step_id, step_index, day, action, zone, due_at, "
                "planned_at, thread_step_id, message_id) FROM STDIN"
            ) as copy:
                for enrolment_id, e in made:
                    for s in e.steps:
                        at = _utc(s.due_utc)
                        copy.write_row(
                            (
                                enrolment_id,
                                s.step_id,
                                s.step_index,
                                s.day,
                                str(s.action),
                                s.zone,
                                at,
                                at,
                                s.thread_step_id,
                                s.message_id,
                            )
                        )
            with conn.cursor() as cur:
                cur.executemany(
                    _EVENT,
                    [(now, "launched", e.email, i, None, cadence_hash, "command") for i, e in made],
                )
            self._wake(conn, (i for i, _ in made))
        return LaunchResult(tuple(enrolled), tuple(already), tuple(suppressed), tuple(overlapping))

    # -- enrolments -----------------------------------------------------------------------

    def enrolments(
        self,
        *,
        email: str | None = None,
        cadence: str | None = None,
        states: Sequence[EnrolmentState] = (),
    ) -> list[EnrolmentRecord]:
        where: list[str] = []
        args: list[Any] = []
        if email is not None:
            where.append("email = %s")
            args.append(email.lower())
        if cadence is not None:
            where.append("cadence_name = %s")
            args.append(cadence)
        if states:
            where.append("state = ANY(%s)")
            args.append([str(s) for s in states])
        query = _ENROLMENT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        with self._tx() as conn:
            return [_enrolment(r) for r in conn.execute(query.encode(), args).fetchall()]

    def enrolments_by_token(self, token: str) -> list[EnrolmentRecord]:
        with self._tx() as conn:
            found = conn.execute(_ENROLMENT + " WHERE unsubscribe_token = %s", (token,)).fetchall()
            if not found:  # rare (a lower-cased plus address): a scan is fine
                found = conn.execute(
                    _ENROLMENT + " WHERE lower(unsubscribe_token) = lower(%s) ORDER BY id",
                    (token,),
                ).fetchall()
        return [_enrolment(r) for r in found]

    def enrolment(self, enrolment_id: int) -> EnrolmentRecord | None:
        with self._tx() as conn:
            found = conn.execute(_ENROLMENT + " WHERE id = %s", (enrolment_id,)).fetchone()
        return _enrolment(found) if found is not None else None

    def end_enrolments(self, endings: Sequence[Ending], now: int) -> int:
        cancelled = 0
        with self._tx() as conn:
            for e in endings:
                if e.state == e.expected:
                    conn.execute(
                        "UPDATE enrolments SET success = success OR %s "
                        "WHERE id = %s AND state = %s",
                        (e.success, e.enrolment_id, str(e.expected)),
                    )
                    continue
                changed = conn.execute(
                    "UPDATE enrolments SET state = %s, ended_at = to_timestamp(%s), "
                    "success = success OR %s, paused_at = NULL, paused_until = NULL "
                    "WHERE id = %s AND state = %s",
                    (str(e.state), now, e.success, e.enrolment_id, str(e.expected)),
                ).rowcount
                if changed and e.state in _END_STATES:
                    # Claimed rows belong to a runner that has not committed `sending`:
                    # its begin_sending sees them cancelled. Rows already `sending` are
                    # caught by the runner's last check before the transport.
                    cancelled += conn.execute(
                        "UPDATE step_runs SET state = 'cancelled', answer = %s "
                        "WHERE enrolment_id = %s AND state IN ('planned', 'claimed', 'open')",
                        (e.reason or f"stopped: {e.state}", e.enrolment_id),
                    ).rowcount
                elif changed:
                    self._wake(conn, [e.enrolment_id])
        return cancelled

    def pause(
        self, enrolment_id: int, now: int, until: int | None, reason: str, source: str = "command"
    ) -> bool:
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE enrolments SET state = 'paused', paused_at = to_timestamp(%s), "
                "paused_until = to_timestamp(%s) WHERE id = %s AND state = 'active'",
                (now, until, enrolment_id),
            ).rowcount
            if changed:
                self._log_enrolment(conn, enrolment_id, now, "paused", reason, source)
        return bool(changed)

    def resume(self, enrolment_id: int, now: int, moves: Sequence[Move]) -> bool:
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE enrolments SET state = 'active', paused_at = NULL, paused_until = NULL "
                "WHERE id = %s AND state = 'paused'",
                (enrolment_id,),
            ).rowcount
            if changed:
                self._log_enrolment(conn, enrolment_id, now, "resumed", "")
                self._move(conn, moves, now)
                self._wake(conn, [enrolment_id])
        return bool(changed)

    def _log_enrolment(
        self,
        conn: psycopg.Connection[Any],
        enrolment_id: int,
        now: int,
        kind: str,
        detail: str,
        source: str = "command",
    ) -> None:
        conn.execute(
            "INSERT INTO events (at, kind, email, enrolment_id, detail, source) "
            "SELECT to_timestamp(%s), %s, email, id, %s, %s FROM enrolments "
            "WHERE id = %s",
            (now, kind, detail, source, enrolment_id),
        )

    # -- step runs and tasks --------------------------------------------------------------

    def _rows(self, where: str, args: Sequence[Any] = ()) -> list[StepRow]:
        with self._tx() as conn:
            return [_row(r) for r in conn.execute((_ROW_SELECT + where).encode(), args)]

    def step_run(self, step_run_id: int) -> StepRow | None:
        found = self._rows(" WHERE sr.id = %s", (step_run_id,))
        return found[0] if found else None

    def step_runs(self, enrolment_id: int) -> list[StepRow]:
        return self._rows(" WHERE sr.enrolment_id = %s ORDER BY sr.step_index", (enrolment_id,))

    def step_runs_of(self, enrolment_ids: Iterable[int]) -> dict[int, list[StepRow]]:
        out: dict[int, list[StepRow]] = {}
        for row in self._rows(
            " WHERE sr.enrolment_id = ANY(%s) ORDER BY sr.enrolment_id, sr.step_index",
            (list(dict.fromkeys(enrolment_ids)),),
        ):
            out.setdefault(row.enrolment_id, []).append(row)
        return out

    def step_run_by_message_id(self, message_id: str) -> StepRow | None:
        found = self._rows(" WHERE sr.message_id = %s ORDER BY sr.id LIMIT 1", (message_id,))
        return found[0] if found else None

    def tasks(self, where: TaskFilter) -> list[StepRow]:
        query = " WHERE sr.state = %s AND (sr.action != 'send email' OR sr.by_hand)"
        args: list[Any] = [str(where.state)]
        if where.due_before is not None:
            query += " AND sr.due_at <= to_timestamp(%s)"
            args.append(where.due_before)
        return self._rows(*_filtered(query, args, where))

    def upcoming_tasks(self, until_utc: int, where: TaskFilter = NO_FILTER) -> list[StepRow]:
        # The predicate of the partial index step_runs_planned_tasks (migration 2).
        query = (
            " WHERE sr.state = 'planned' AND sr.action != 'send email' AND NOT sr.by_hand"
            " AND e.state = 'active' AND sr.due_at <= to_timestamp(%s)"
        )
        return self._rows(*_filtered(query, [until_utc], where))

    def _move(
        self,
        conn: psycopg.Connection[Any],
        moves: Sequence[Move],
        now: int,
        *,
        source: str = "command",
    ) -> None:
        """Apply moves to rows still `planned`, each logged `rescheduled` at `now`."""
        if not moves:
            return
        moved = conn.execute(
            "UPDATE step_runs sr SET due_at = to_timestamp(m.due), "
            "planned_at = to_timestamp(m.planned) "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[]) "
            "AS m(id, due, planned, reason) "
            "WHERE sr.id = m.id AND sr.state = 'planned' RETURNING sr.id",
            (
                [m.step_run_id for m in moves],
                [m.due_utc for m in moves],
                [m.planned_utc for m in moves],
                [m.reason for m in moves],
            ),
        ).fetchall()
        done = {int(r[0]) for r in moved}
        applied = [m for m in moves if m.step_run_id in done]
        if not applied:
            return
        conn.execute(
            "INSERT INTO events (at, kind, email, enrolment_id, step_run_id, detail, source) "
            "SELECT to_timestamp(%s), 'rescheduled', e.email, e.id, sr.id, "
            "m.reason, %s FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) "
            "WITH ORDINALITY AS m(id, due, reason, n) "
            "JOIN step_runs sr ON sr.id = m.id JOIN enrolments e ON e.id = sr.enrolment_id "
            "ORDER BY m.n",
            (
                now,
                source,
                [m.step_run_id for m in applied],
                [m.due_utc for m in applied],
                [m.reason for m in applied],
            ),
        )
        enrolment_ids = conn.execute(
            "SELECT DISTINCT enrolment_id FROM step_runs WHERE id = ANY(%s)", (list(done),)
        ).fetchall()
        self._wake(conn, (r[0] for r in enrolment_ids))

    def move_steps(self, moves: Sequence[Move], now: int) -> None:
        with self._tx() as conn:
            self._move(conn, moves, now)

    def settle_task(
        self, step_run_id: int, state: StepState, now: int, moves: Sequence[Move]
    ) -> bool:
        kind = "task done" if state is StepState.DONE else "task skipped"
        with self._tx() as conn:
            found = conn.execute(
                "UPDATE step_runs SET state = %s, done_at = to_timestamp(%s) "
                "WHERE id = %s AND state = 'open' RETURNING enrolment_id",
                (str(state), now, step_run_id),
            ).fetchone()
            if found is None:
                return False
            conn.execute(
                "INSERT INTO events (at, kind, email, enrolment_id, step_run_id, detail, "
                "source) SELECT to_timestamp(%s), %s, e.email, e.id, sr.id, sr.action, "
                "'command' FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id "
                "WHERE sr.id = %s",
                (now, kind, step_run_id),
            )
            self._move(conn, moves, now)
            self._wake(conn, [int(found[0])])
        return True

    def schedule_task_email(self, step_run_id: int, subject: str, body: str, due_utc: int) -> bool:
        with self._tx() as conn:
            found = conn.execute(
                "UPDATE step_runs SET state = 'planned', by_hand = true, subject = %s, "
                "body = %s, due_at = to_timestamp(%s) "
                "WHERE id = %s AND state = 'open' AND action = 'email task' "
                "RETURNING enrolment_id",
                (subject, body, due_utc, step_run_id),
            ).fetchone()
            if found is None:
                return False
            conn.execute(
                "INSERT INTO events (at, kind, email, enrolment_id, step_run_id, detail, "
                "source) SELECT to_timestamp(%s), 'rescheduled', e.email, e.id, sr.id, "
                "'sent by a rep', 'command' FROM step_runs sr "
                "JOIN enrolments e ON e.id = sr.enrolment_id WHERE sr.id = %s",
                (due_utc, step_run_id),
            )
            self._wake(conn, [int(found[0])])
        return True

    # -- signals, suppressions, events ----------------------------------------------------

    def record_signal(self, signal: Signal) -> bool:
        with self._tx() as conn:
            if signal.kind is not SignalKind.AUTO_REPLY:  # each auto-reply pauses anew
                new = conn.execute(
                    "INSERT INTO signals VALUES (%s, %s, %s, to_timestamp(%s)) "
                    "ON CONFLICT DO NOTHING",
                    (str(signal.kind), signal.email, signal.cadence_name or "", signal.at_utc),
                ).rowcount
                if not new:
                    return False
            conn.execute(
                _EVENT,
                (
                    signal.at_utc,
                    str(signal.kind),
                    signal.email,
                    None,
                    None,
                    signal.detail or signal.cadence_name,
                    signal.source,
                ),
            )
        return True

    def suppress(self, email: str, reason: str, now: int) -> bool:
        with self._tx() as conn:
            return bool(
                conn.execute(
                    "INSERT INTO suppressions VALUES (%s, %s, to_timestamp(%s)) "
                    "ON CONFLICT DO NOTHING",
                    (email.lower(), reason, now),
                ).rowcount
            )

    def is_suppressed(self, email: str) -> bool:
        with self._tx() as conn:
            found = conn.execute(
                "SELECT 1 FROM suppressions WHERE email = %s", (email.lower(),)
            ).fetchone()
        return found is not None

    def add_event(self, event: EventRecord) -> None:
        with self._tx() as conn:
            conn.execute(
                _EVENT,
                (
                    event.at_utc,
                    event.kind,
                    event.email,
                    event.enrolment_id,
                    event.step_run_id,
                    event.detail,
                    event.source,
                ),
            )

    def events(
        self,
        *,
        step_run_id: int | None = None,
        email: str | None = None,
        enrolment_id: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[EventRecord]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("step_run_id", step_run_id),
            ("email", email.lower() if email is not None else None),
            ("enrolment_id", enrolment_id),
        ):
            if value is not None:
                where.append(f"{column} = %s")
                args.append(value)
        query = (
            f"SELECT {_epoch('at')}, kind, coalesce(email, ''), coalesce(detail, ''), "
            "enrolment_id, step_run_id, coalesce(source, ''), id FROM events"
            + (" WHERE " + " AND ".join(where) if where else "")
            + (" ORDER BY id DESC" if newest_first else " ORDER BY id")
        )
        if limit is not None:
            query += " LIMIT %s"
            args.append(limit)
        with self._tx() as conn:
            return [EventRecord(*r) for r in conn.execute(query.encode(), args).fetchall()]

    def latest_events(
        self, kinds: Sequence[str], limit: int, *, sender: str | None = None
    ) -> list[EventRecord]:
        query = (
            f"SELECT {_epoch('ev.at')}, ev.kind, coalesce(ev.email, ''), "
            "coalesce(ev.detail, ''), ev.enrolment_id, ev.step_run_id, "
            "coalesce(ev.source, ''), ev.id FROM events ev "
            "LEFT JOIN step_runs sr ON sr.id = ev.step_run_id "
            "LEFT JOIN enrolments e ON e.id = coalesce(ev.enrolment_id, sr.enrolment_id) "
            "WHERE ev.kind = ANY(%s)"
        )
        args: list[Any] = [list(kinds)]
        if sender is not None:
            # About a contact of theirs, and not about an enrolment in someone else's cadence.
            query += (
                " AND ev.email IN (SELECT email FROM enrolments "
                f"WHERE cadence_hash IN ({_OF_SENDER})) "
                f"AND (e.cadence_hash IS NULL OR e.cadence_hash IN ({_OF_SENDER}))"
            )
            args += [sender.lower(), sender.lower()]
        query += " ORDER BY ev.at DESC, ev.id DESC LIMIT %s"
        args.append(limit)
        with self._tx() as conn:
            return [EventRecord(*r) for r in conn.execute(query.encode(), args).fetchall()]

    # -- inbound mail ---------------------------------------------------------------------

    def cursor(self, mailbox: str) -> Cursor | None:
        with self._tx() as conn:
            found = conn.execute(
                "SELECT uidvalidity, last_uid FROM mailbox_cursors WHERE mailbox = %s",
                (mailbox,),
            ).fetchone()
        return Cursor(int(found[0]), int(found[1])) if found is not None else None

    def set_cursor(self, mailbox: str, cursor: Cursor) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO mailbox_cursors VALUES (%s, %s, %s) ON CONFLICT (mailbox) "
                "DO UPDATE SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid",
                (mailbox, cursor.uidvalidity, cursor.last_uid),
            )

    def remember_inbound(self, key: str, mailbox: str, now: int) -> bool:
        with self._tx() as conn:
            return bool(
                conn.execute(
                    "INSERT INTO inbound_seen VALUES (%s, %s, to_timestamp(%s)) "
                    "ON CONFLICT DO NOTHING",
                    (key, mailbox, now),
                ).rowcount
            )

    def seen_inbound(self, keys: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return set()
        with self._tx() as conn:
            found = conn.execute(
                "SELECT key FROM inbound_seen WHERE key = ANY(%s)", (wanted,)
            ).fetchall()
        return {str(r[0]) for r in found}

    # -- views ----------------------------------------------------------------------------

    def status(self, now: int) -> list[VersionStatus]:
        out: list[VersionStatus] = []
        with self._tx() as conn:
            versions = conn.execute(
                "SELECT v.hash, v.name, coalesce(v.data -> 'sender' ->> 'email', '') "
                "FROM cadence_versions v "
                "WHERE EXISTS (SELECT 1 FROM enrolments e WHERE e.cadence_hash = v.hash) "
                "ORDER BY v.name, v.created_at"
            ).fetchall()
            for cadence_hash, name, sender in versions:
                states = {
                    str(s): int(n)
                    for s, n in conn.execute(
                        "SELECT state, count(*) FROM enrolments WHERE cadence_hash = %s "
                        "GROUP BY state",
                        (cadence_hash,),
                    ).fetchall()
                }
                found = conn.execute(
                    "SELECT count(*) FROM enrolments WHERE cadence_hash = %s AND success",
                    (cadence_hash,),
                ).fetchone()
                successes = int(found[0]) if found else 0
                steps: dict[str, int] = {}
                for key, n in conn.execute(
                    _STEP_COUNTS.encode(), {"now": now, "hash": cadence_hash}
                ).fetchall():
                    steps[key] = steps.get(key, 0) + int(n)
                out.append(
                    VersionStatus(
                        cadence_name=name,
                        cadence_hash=cadence_hash,
                        sender=sender,
                        enrolled=sum(states.values()),
                        active=states.get("active", 0),
                        paused=states.get("paused", 0),
                        finished={
                            k: states.get(k, 0)
                            for k in ("replied", "bounced", "unsubscribed", "completed", "removed")
                        },
                        successes=successes,
                        sent=steps.get("sent", 0),
                        due=steps.get("planned:due", 0),
                        held=steps.get("planned:held", 0),
                        open_tasks=steps.get("open", 0),
                        failed=steps.get("failed", 0),
                        retrying=sum(n for k, n in steps.items() if k.startswith("retrying")),
                        claimed=steps.get("claimed", 0),
                        sending=steps.get("sending", 0),
                        unknown=steps.get("unknown", 0),
                    )
                )
        return out

    def unknown_sends(self) -> list[StepRow]:
        return self._rows(
            " WHERE sr.state = 'unknown' OR (sr.state = 'sending' "
            "AND sr.lease_until < clock_timestamp()) ORDER BY sr.id"
        )

    def resolve(self, step_run_id: int, sent: bool, now: int) -> bool:
        with self._tx() as conn:
            found = conn.execute(
                "SELECT enrolment_id FROM step_runs WHERE id = %s AND (state = 'unknown' OR "
                "(state = 'sending' AND lease_until < clock_timestamp())) FOR UPDATE",
                (step_run_id,),
            ).fetchone()
            if found is None:
                return False
            if sent:
                conn.execute(
                    "UPDATE step_runs SET state = 'sent', sent_at = to_timestamp(%s), "
                    "fence = NULL, lease_until = NULL WHERE id = %s",
                    (now, step_run_id),
                )
            else:
                # Same row, same Message-ID: a receiving server that did get it can dedupe.
                conn.execute(
                    "UPDATE step_runs SET state = 'planned', fence = NULL, lease_until = NULL "
                    "WHERE id = %s",
                    (step_run_id,),
                )
            conn.execute(
                "INSERT INTO events (at, kind, email, enrolment_id, step_run_id, detail, "
                "source) SELECT to_timestamp(%s), 'resolved', e.email, e.id, sr.id, %s, "
                "'command' FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id "
                "WHERE sr.id = %s",
                (now, "sent" if sent else "resend", step_run_id),
            )
            self._wake(conn, [int(found[0])])
        return True


class _JobsManager:
    """Defers the step-run jobs through procrastinate on a connection we hold."""

    def __init__(self) -> None:
        from procrastinate import App, SyncPsycopgConnector

        self._app = App(connector=SyncPsycopgConnector())

    def defer(self, conn: psycopg.Connection[Any], due: Sequence[tuple[int, datetime]]) -> None:
        from procrastinate.jobs import Job

        self._app.job_manager.batch_defer_jobs(
            [
                Job(
                    id=None,
                    queue=QUEUE,
                    lock=None,
                    queueing_lock=step_lock(step_run_id),
                    task_name=STEP_TASK,
                    task_kwargs={"step_run_id": step_run_id},
                    scheduled_at=at,
                )
                for step_run_id, at in due
            ],
            connection=conn,
        )


def _jobs_manager() -> _JobsManager:
    try:
        return _JobsManager()
    except ImportError as exc:
        raise UsageError(
            "CADENCE_DB is a PostgreSQL URL but procrastinate is not installed",
            hint=INSTALL_HINT,
        ) from exc
