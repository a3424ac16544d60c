"""The store contract: the records, and the two protocols every state store implements.

A store keeps durable state and hands out work; it decides nothing. What a signal ends,
when an enrolment is complete, how a late task or a pause shifts the rest, which day has
room under a daily limit: those are pure functions of the engine (`engine.lifecycle`,
`engine.policy`), called by the runner and the commands, and a store only writes their
answers. What a store must guarantee, whatever its SQL:

- `WorkQueue.claim` takes only *due and reachable* rows: state `planned`, `due_utc <= now`,
  enrolment `active`, and every earlier step run of the same enrolment in a `SETTLED`
  state (R5: an open task or an unknown send holds the rest). It first expires leases by
  the store's own clock (`claimed` → `planned`, `sending` → `unknown` with an `unknown`
  event), then marks what it takes `claimed` under one new fencing token, strictly greater
  than every token handed out before, with a lease of `lease_seconds` from the store's
  clock.
- `begin_sending` commits `claimed` → `sending` only for rows still holding the fence whose
  enrolment is active and whose address is not suppressed; the others become `cancelled`.
  After it returns, the rows it returned are durable (SQLite: synchronous=FULL); inside
  a `batch`, once the batch has committed.
- `finish` records an outcome only on rows still holding the fence (a row taken over by
  another claim after its lease ran out is left alone).
- `book_sends` counts atomically (`sent = sent + granted … WHERE sent < limit`): two
  writers never overbook a sender's day.
- Every method is one transaction; a failure changes nothing.
- Stores are context managers: `with open_store(url) as store:` closes the store.

The Command Center's reads (each a plain query, no write):

- `upcoming_tasks` lists task steps the runner has not opened yet: `planned`, not a rep's
  scheduled email (`by_hand`), of an `active` enrolment, `due_utc <= until_utc`, soonest
  first; whether an open task before them holds them does not matter (they show their
  planned time). SQLite reads them through a partial index the runner's email rows never
  enter, so the query never walks due emails.
- `latest_events` is the live feed: the newest events of some kinds, by time then id. With
  `sender`, only events about an address enrolled in a version whose `sender.email` is
  `sender` (case-insensitive), and none about an enrolment, or a step run of one, in
  another sender's version.
- A "sender" filter always means the pinned version's `sender.email`, as in `TaskFilter`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self

from ..plan import Action

__all__ = [
    "HOLDING",
    "SETTLED",
    "Action",
    "Claim",
    "Cursor",
    "Ending",
    "EnrolmentRecord",
    "EnrolmentState",
    "EventRecord",
    "LaunchResult",
    "Move",
    "NewEnrolment",
    "NewStep",
    "Outcome",
    "OutcomeKind",
    "Repository",
    "Signal",
    "SignalKind",
    "StepRow",
    "StepState",
    "Store",
    "TaskFilter",
    "VersionStatus",
    "WorkQueue",
]


# Row ids are 64-bit integers in both stores: a larger number names no row. Where a
# user gives one (a command's ID, a page's URL), it is refused there, not overflowed here.
MAX_ROW_ID = 2**63 - 1


class StepState(enum.StrEnum):
    """A step run's state, stored by value."""

    PLANNED = "planned"  # waiting for its time (and for the steps before it)
    CLAIMED = "claimed"  # taken by a runner under a lease; nothing handed over yet
    SENDING = "sending"  # durably about to be handed over: never resent automatically
    SENT = "sent"
    UNKNOWN = "unknown"  # a runner died while sending: an operator resolves it
    FAILED = "failed"  # refused for good (the server's answer is kept)
    OPEN = "open"  # a task waiting for a person
    DONE = "done"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"  # stopped by a signal, a suppression or `enrolments remove`


# R5: the states after which the next step of the same enrolment may run.
SETTLED: frozenset[StepState] = frozenset(
    {StepState.SENT, StepState.DONE, StepState.SKIPPED, StepState.CANCELLED, StepState.FAILED}
)
# The states that hold an enrolment's later steps until a person acts (task, `resolve`).
HOLDING: frozenset[StepState] = frozenset({StepState.OPEN, StepState.UNKNOWN})


class EnrolmentState(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # held by `enrolments pause` or an auto-reply; nothing runs
    COMPLETED = "completed"
    REPLIED = "replied"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    REMOVED = "removed"  # `enrolments remove`: ended by an operator, history kept


class SignalKind(enum.StrEnum):
    REPLY = "reply"
    BOUNCE = "bounce"
    UNSUBSCRIBE = "unsubscribe"
    AUTO_REPLY = "auto-reply"


class NewStep(NamedTuple):
    step_id: str
    step_index: int
    day: int
    action: Action
    zone: str
    due_utc: int
    thread_step_id: str | None
    message_id: str | None


class NewEnrolment(NamedTuple):
    email: str  # lower-cased
    contact: str  # the contact row as JSON (engine.run.versions.contact_json)
    uid: str
    unsubscribe_token: str
    steps: tuple[NewStep, ...]


class LaunchResult(NamedTuple):
    enrolled: tuple[str, ...]
    already_enrolled: tuple[str, ...]  # active in this same cadence
    suppressed: tuple[str, ...]  # bounced or unsubscribed before
    # (email, cadence name): active in another cadence, skipped (exclusivity, SPEC §11)
    overlapping: tuple[tuple[str, str], ...] = ()


class StepRow(NamedTuple):
    """One step run of one enrolment, with what is needed to execute or show it.

    A named tuple, not a frozen dataclass: as immutable, and a run decodes two of them
    per email sent (its claim, its enrolment's steps), where a frozen dataclass's
    `__init__` costs five times as much as making the tuple (`from_columns`).
    """

    id: int
    enrolment_id: int
    cadence_name: str
    cadence_hash: str
    email: str
    contact: str  # JSON
    uid: str
    unsubscribe_token: str
    enrolment_state: EnrolmentState
    suppressed: bool
    step_id: str
    step_index: int
    day: int
    action: Action
    zone: str
    due_utc: int
    planned_utc: int  # the schedule lateness is measured against (moved by R5 shifts only)
    thread_step_id: str | None
    message_id: str | None
    state: StepState
    fence: int | None
    attempts: int
    by_hand: bool  # a rep sent or scheduled it (tasks send)
    subject: str | None  # a rep's text, when by_hand
    body: str | None
    sent_utc: int | None
    done_utc: int | None
    answer: str | None  # the last server answer or reason
    # The step this follow-up replies to: when it was sent (None: never) and its subject
    # as sent when a rep changed it (None: the template's).
    thread_sent_utc: int | None = None
    thread_subject: str | None = None
    lease_until: float | None = None
    # The `{{ unsubscribe_url }}` the email went out with (the runner's environment chose
    # it); None when not sent, or sent before the store kept it.
    unsubscribe_url: str | None = None

    @classmethod
    def from_columns(cls, columns: Sequence[Any]) -> StepRow:
        """A row from a store's columns in field order: states and the action stored by
        their values, the two flags as 0/1 (every store's one decoder)."""
        v = list(columns)
        v[8] = _ENROLMENT_STATES[v[8]]
        v[9] = bool(v[9])  # suppressed
        v[13] = _ACTIONS[v[13]]
        v[19] = _STEP_STATES[v[19]]
        v[22] = bool(v[22])  # by_hand
        return _make_tuple(cls, v)


_make_tuple = tuple.__new__  # (skips the generated `__new__`: one call, not 32 arguments)
_STEP_STATES = {s.value: s for s in StepState}
_ENROLMENT_STATES = {s.value: s for s in EnrolmentState}
_ACTIONS = {a.value: a for a in Action}


class EnrolmentRecord(NamedTuple):
    id: int
    uid: str
    cadence_name: str
    cadence_hash: str
    email: str
    contact: str  # JSON
    unsubscribe_token: str
    state: EnrolmentState
    success: bool
    launched_utc: int
    ended_utc: int | None
    paused_utc: int | None  # when the current pause began (state paused)
    paused_until: int | None  # when it ends by itself (an auto-reply); None: by hand


class Claim(NamedTuple):
    fence: int
    rows: tuple[StepRow, ...]  # due and reachable, now `claimed` under `fence`


class Move(NamedTuple):
    """A later step run's new times (R4, R5): `due_utc` runs it, `planned_utc` is the
    schedule the next lateness is measured against."""

    step_run_id: int
    due_utc: int
    planned_utc: int
    reason: str  # why, for the `rescheduled` event


class OutcomeKind(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"  # known not sent (failure before DATA): due again at `retry_utc`
    FAILED = "failed"  # permanent, not the address's fault, or the message cannot be built
    BOUNCED = "bounce"  # permanent failure for the recipient (5xx to RCPT): `failed`, a bounce
    CANCELLED = "cancelled"  # a signal or a suppression arrived before handing over
    UNKNOWN = "unknown"  # failure during or after DATA: may have been delivered
    RELEASED = "released"  # never handed over: due again at once, no attempt counted
    OPENED = "task created"  # a task came due: `open` for a person
    RESCHEDULED = "rescheduled"  # not now (send window, daily limit): due at `retry_utc`


# The step state each outcome leaves a row in.
OUTCOME_STATE: dict[OutcomeKind, StepState] = {
    OutcomeKind.SENT: StepState.SENT,
    OutcomeKind.RETRY: StepState.PLANNED,
    OutcomeKind.FAILED: StepState.FAILED,
    OutcomeKind.BOUNCED: StepState.FAILED,
    OutcomeKind.CANCELLED: StepState.CANCELLED,
    OutcomeKind.UNKNOWN: StepState.UNKNOWN,
    OutcomeKind.RELEASED: StepState.PLANNED,
    OutcomeKind.OPENED: StepState.OPEN,
    OutcomeKind.RESCHEDULED: StepState.PLANNED,
}

# The event each outcome logs for its step run. A bounce is a failure of the step, logged
# `failed` with the server's answer; the `bounce` itself is the signal the runner records
# beside it (engine.signals), so the contact's events show one of each.
OUTCOME_EVENT: dict[OutcomeKind, str] = {
    **{kind: str(kind) for kind in OutcomeKind},
    OutcomeKind.BOUNCED: str(OutcomeKind.FAILED),
}


class Outcome(NamedTuple):
    """What became of one claimed row. The store writes `OUTCOME_STATE[kind]`, `answer`,
    `sent_utc` (SENT), `due_utc = retry_utc` (RETRY, RESCHEDULED; RETRY also counts an
    attempt), clears fence and lease on rows that go back to `planned`, applies
    `followers` (only to rows still `planned`), keeps `unsubscribe_url` when given (SENT,
    UNKNOWN: the link the built message carried) and logs one event per outcome
    (`OUTCOME_EVENT[kind]`; none for RELEASED) plus one `rescheduled` per follower."""

    step_run_id: int
    kind: OutcomeKind
    at_utc: int
    answer: str = ""
    retry_utc: int | None = None
    followers: tuple[Move, ...] = ()
    unsubscribe_url: str | None = None


class Signal(NamedTuple):
    """A reply, bounce, unsubscribe or auto-reply as it was heard, with where from:
    `source` is `command`, `web`, or `mailbox <url> uid <n>`."""

    kind: SignalKind
    email: str  # lower-cased
    cadence_name: str | None  # replies may name one cadence; None: every cadence
    at_utc: int
    source: str = "command"
    detail: str = ""


class Ending(NamedTuple):
    """An enrolment the engine decided to end (or to mark a success).

    The store applies it only while the enrolment is still in `expected` (a concurrent
    change wins) and, when `state` is an end state, cancels its `planned`, `claimed` and
    `open` step runs with `reason`.
    """

    enrolment_id: int
    expected: EnrolmentState
    state: EnrolmentState  # the same as `expected` to only mark a success
    success: bool = False
    reason: str = ""


class Cursor(NamedTuple):
    """Where polling a mailbox got to."""

    uidvalidity: int
    last_uid: int


class EventRecord(NamedTuple):
    at_utc: int
    kind: str
    email: str
    detail: str
    enrolment_id: int | None = None
    step_run_id: int | None = None
    source: str = ""
    id: int = 0


class TaskFilter(NamedTuple):
    cadence: str | None = None
    action: Action | None = None
    due_before: int | None = None
    sender: str | None = None  # the cadence's sender.email (a rep's own tasks)
    state: StepState = StepState.OPEN


NO_FILTER = TaskFilter()  # every cadence, action and sender


class VersionStatus(NamedTuple):
    cadence_name: str
    cadence_hash: str
    sender: str
    enrolled: int
    active: int
    paused: int
    finished: dict[str, int]  # replied, bounced, unsubscribed, completed, removed
    successes: int
    sent: int
    due: int  # planned, time come, reachable: the next run executes them
    held: int  # planned, time come, but behind an open task (R5) or an unknown send
    open_tasks: int
    failed: int
    retrying: int  # planned again after a temporary failure
    claimed: int  # in flight: claimed by a runner whose lease runs
    sending: int  # in flight: being handed over under a running lease
    unknown: int  # `unknown`, and `sending` whose lease is over (a crashed run's)


class WorkQueue(Protocol):
    """Claiming due work under a lease and a fence, and recording what became of it."""

    def clock(self) -> float:
        """The store's own time (seconds since the epoch): leases are measured in it."""
        ...

    def claim(self, now: int, limit: int, lease_seconds: float) -> Claim:
        """Expire ended leases, then claim up to `limit` rows due at `now` (see module doc)."""
        ...

    def begin_sending(self, fence: int, ids: Iterable[int]) -> set[int]:
        """Durably mark claimed rows `sending`; returns those still ours and not stopped
        (rows of a paused enrolment go back to `planned`, others stopped are cancelled)."""
        ...

    def stopped(self, ids: Iterable[int]) -> dict[int, OutcomeKind]:
        """The last check before the transport: of these rows, those not to hand over,
        each with what to record: RELEASED when the enrolment is paused, CANCELLED when it
        ended, the address is suppressed or the row was cancelled."""
        ...

    def finish(self, fence: int, outcomes: Iterable[Outcome]) -> None:
        """Record what happened to claimed rows (only those still holding `fence`)."""
        ...

    def release(self, fence: int) -> int:
        """Every row still `claimed` under `fence` goes back to `planned` (never handed
        over); returns how many."""
        ...

    def book_sends(self, sender: str, day: str, limit: int, wanted: int) -> int:
        """Atomically book up to `wanted` automatic emails on `sender`'s local `day`
        (ISO date) without passing `limit`; returns how many were granted."""
        ...

    def take_task_email(
        self, step_run_id: int, subject: str, body: str, lease_seconds: float
    ) -> int | None:
        """Claim an `open` email task with a rep's text for sending now: its fence, or
        None when it is no longer open."""
        ...


class Repository(Protocol):
    """Versions, enrolments, step runs, tasks, signals, events, suppressions, cursors."""

    # -- versions and launch
    def save_version(self, cadence_hash: str, name: str, source: str, data: str, now: int) -> None:
        """Keep a cadence version (idempotent) so pinned enrolments can be rebuilt."""
        ...

    def version(self, cadence_hash: str) -> tuple[str, str]:
        """(data JSON, source text) of a stored version; NotFound when it is not there."""
        ...

    def versions(self) -> dict[str, tuple[str, str]]:
        """Every stored version: hash → (cadence name, data JSON)."""
        ...

    def launch(
        self,
        cadence_name: str,
        cadence_hash: str,
        enrolments: Iterable[NewEnrolment],
        now: int,
        *,
        allow_overlap: bool = False,
    ) -> LaunchResult:
        """Enrol all at once or none, logging `launched`. Skipped: a contact active (or
        paused) in this cadence, a suppressed address, and, unless `allow_overlap`, a
        contact active or paused in another cadence. Atomic under concurrent launches."""
        ...

    # -- enrolments
    def enrolments(
        self,
        *,
        email: str | None = None,
        cadence: str | None = None,
        states: Sequence[EnrolmentState] = (),
    ) -> list[EnrolmentRecord]:
        """Enrolments matching every filter given, oldest first."""
        ...

    def enrolment(self, enrolment_id: int) -> EnrolmentRecord | None: ...

    def enrolments_by_token(self, token: str) -> list[EnrolmentRecord]:
        """The enrolment holding this unsubscribe token; when none holds it exactly, those
        whose token matches it with ASCII case ignored (a mail system may lower-case a
        plus address). Empty when none matches."""
        ...

    def end_enrolments(self, endings: Sequence[Ending], now: int) -> int:
        """Apply the engine's endings (see `Ending`); returns the step runs cancelled."""
        ...

    def pause(
        self, enrolment_id: int, now: int, until: int | None, reason: str, source: str = "command"
    ) -> bool:
        """An active enrolment becomes `paused` (nothing of it is claimed), logged
        `paused` with `reason` and `source` (an auto-reply's: `mailbox <url> uid <n>`);
        False if it was not active."""
        ...

    def resume(self, enrolment_id: int, now: int, moves: Sequence[Move]) -> bool:
        """A paused enrolment becomes `active` again with its planned steps moved by
        `moves` (the engine's shift by the pause); False if it was not paused."""
        ...

    # -- step runs and tasks
    def step_run(self, step_run_id: int) -> StepRow | None: ...

    def step_runs(self, enrolment_id: int) -> list[StepRow]:
        """An enrolment's steps in file order."""
        ...

    def step_runs_of(self, enrolment_ids: Iterable[int]) -> dict[int, list[StepRow]]:
        """Several enrolments' steps at once: id → steps in file order."""
        ...

    def step_run_by_message_id(self, message_id: str) -> StepRow | None:
        """The email step run that carries this Message-ID (`<…>`), for inbound matching."""
        ...

    def tasks(self, where: TaskFilter) -> list[StepRow]:
        """Tasks in `where.state` (open by default), oldest due first."""
        ...

    def upcoming_tasks(self, until_utc: int, where: TaskFilter = NO_FILTER) -> list[StepRow]:
        """Task steps not opened yet, due by `until_utc`, soonest first (see module doc);
        `where`'s cadence, action and sender filter as in `tasks` (its state and
        due_before do not apply: these rows are `planned`)."""
        ...

    def settle_task(
        self, step_run_id: int, state: StepState, now: int, moves: Sequence[Move]
    ) -> bool:
        """An `open` task becomes `done` or `skipped` and `moves` apply (R4, R5); False
        when it was no longer open."""
        ...

    def schedule_task_email(self, step_run_id: int, subject: str, body: str, due_utc: int) -> bool:
        """An `open` email task becomes a rep's email the runner sends at `due_utc`."""
        ...

    def move_steps(self, moves: Sequence[Move], now: int) -> None:
        """Apply moves to step runs still `planned`, each logged `rescheduled`."""
        ...

    # -- signals, suppressions, events
    def record_signal(self, signal: Signal) -> bool:
        """Log a signal with its source; False when the same kind for the same address
        (and cadence) was recorded before (then nothing is logged)."""
        ...

    def suppress(self, email: str, reason: str, now: int) -> bool:
        """Suppress an address for every cadence; False when it already was."""
        ...

    def is_suppressed(self, email: str) -> bool: ...

    def add_event(self, event: EventRecord) -> None: ...

    def events(
        self,
        *,
        step_run_id: int | None = None,
        email: str | None = None,
        enrolment_id: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[EventRecord]:
        """The append-only event log, filtered; oldest first unless `newest_first`."""
        ...

    def latest_events(
        self, kinds: Sequence[str], limit: int, *, sender: str | None = None
    ) -> list[EventRecord]:
        """The newest `limit` events whose kind is one of `kinds`, newest first (by
        `at_utc`, then id); `sender` limits them to that sender's contacts (module doc)."""
        ...

    # -- inbound mail
    def batch(self) -> AbstractContextManager[None]:
        """A block whose writes commit as one transaction when it ends, or not at all when
        it raises; reads inside see them, and a `batch` inside a `batch` joins the outer
        one. For a caller that makes many small writes (a mailbox poll's acts and dedupe
        keys, a chunk at a time; the runner's record of one chunk with the `sending` of
        the next): one commit instead of one per write. The block holds the store's
        write lock (SQLite) or one connection (PostgreSQL) while it lasts, so keep it
        short."""
        ...

    def cursor(self, mailbox: str) -> Cursor | None: ...

    def set_cursor(self, mailbox: str, cursor: Cursor) -> None: ...

    def remember_inbound(self, key: str, mailbox: str, now: int) -> bool:
        """Insert an inbound message's dedupe key; False when it was handled before."""
        ...

    def seen_inbound(self, keys: Iterable[str]) -> set[str]:
        """Of these dedupe keys, those remembered before (nothing is inserted): a poller
        acts first and remembers after, so a crash between the two never loses a message."""
        ...

    # -- views
    def status(self, now: int) -> list[VersionStatus]:
        """Counts per cadence version (see VersionStatus), by the store's clock for leases."""
        ...

    def unknown_sends(self) -> list[StepRow]:
        """`unknown` rows, and `sending` rows whose lease is over, by key."""
        ...

    def resolve(self, step_run_id: int, sent: bool, now: int) -> bool:
        """Settle an `unknown` send: `sent`, or `planned` again (same Message-ID); False
        when it is not unknown."""
        ...


class Store(WorkQueue, Repository, Protocol):
    """A whole state store: both protocols, as a context manager."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def close(self) -> None: ...
