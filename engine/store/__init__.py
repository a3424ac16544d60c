"""The state store: the `Store` protocol, its records, and `open_store` by URL.

The protocol is the runner's whole view of durable state. It is deliberately made of
domain operations (claim, begin_sending, finish, …), each one transaction, so a second
implementation (PostgreSQL) can give the same guarantees with its own SQL.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.errors import UsageError

DEFAULT_DB = "./cadence.db"

# Step-run states after which the next step of the same enrolment may run (R5 holds on
# the others: an open task, an email in flight or of unknown outcome).
TERMINAL_STATES = ("sent", "done", "skipped", "cancelled", "failed")


@dataclass(frozen=True, slots=True)
class NewStep:
    step_id: str
    step_index: int
    day: int
    action: str
    zone: str
    due_utc: int
    depends_on: str
    thread_step_id: str | None
    message_id: str | None


@dataclass(frozen=True, slots=True)
class NewEnrolment:
    email: str
    contact: str  # JSON
    uid: str
    unsubscribe_token: str
    steps: tuple[NewStep, ...]


@dataclass(frozen=True, slots=True)
class LaunchResult:
    enrolled: tuple[str, ...]
    already_enrolled: tuple[str, ...]
    suppressed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step run of one enrolment, with what is needed to execute or show it."""

    id: int
    enrolment_id: int
    cadence_name: str
    cadence_hash: str
    email: str
    contact: str  # JSON
    uid: str
    unsubscribe_token: str
    enrolment_state: str
    suppressed: bool
    step_id: str
    step_index: int
    day: int
    action: str
    zone: str
    due_utc: int
    planned_utc: int
    depends_on: str
    thread_step_id: str | None
    message_id: str | None
    state: str
    fence: int | None
    attempts: int
    by_hand: bool
    subject: str | None
    body: str | None
    sent_utc: int | None
    done_utc: int | None
    answer: str | None
    thread_sent_utc: int | None = None  # when the email a follow-up replies to went out


class DecisionKind(enum.StrEnum):
    CLAIM = "claim"  # send it now
    OPEN_TASK = "open task"  # a task becomes due: open it for a person
    RESCHEDULE = "rescheduled"  # not now (send window, daily limit): move it
    CANCEL = "cancelled"  # never (suppressed address)


@dataclass(frozen=True, slots=True)
class Decision:
    kind: DecisionKind
    due_utc: int | None = None
    reason: str = ""
    # (sender, local day) an automatic email counts against for daily_limit.
    day_key: tuple[str, str] | None = None


SentOn = Callable[[str, str], int]
Decide = Callable[[StepRow, SentOn], Decision]


@dataclass(frozen=True, slots=True)
class Claim:
    fence: int
    rows: tuple[StepRow, ...]  # claimed emails, to send
    examined: int  # due rows looked at (claimed, opened, moved or cancelled)
    opened: int = 0
    rescheduled: int = 0
    cancelled: int = 0


@dataclass(frozen=True, slots=True)
class Move:
    """A later step run's new times (R4, R5): `due_utc` runs it, `planned_utc` is the
    schedule the next lateness is measured against."""

    step_run_id: int
    step_id: str
    due_utc: int
    planned_utc: int
    reason: str = ""  # why, for the `rescheduled` event ("" when the caller logs it)


class OutcomeKind(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"  # known not sent (failure before DATA): try again later
    FAILED = "failed"  # permanent, not the address's fault
    BOUNCED = "bounce"  # permanent failure for the recipient (5xx to RCPT)
    CANCELLED = "cancelled"  # a signal arrived before handing over
    UNKNOWN = "unknown"  # failure during or after DATA: may have been delivered
    RELEASED = "released"  # never handed over (the runner was asked to stop): due again


@dataclass(frozen=True, slots=True)
class Outcome:
    step_run_id: int
    kind: OutcomeKind
    at_utc: int
    answer: str = ""
    retry_utc: int | None = None
    # R4/R5: later steps of the enrolment that move now this email went out.
    followers: tuple[Move, ...] = ()


class SignalKind(enum.StrEnum):
    REPLY = "reply"
    BOUNCE = "bounce"
    UNSUBSCRIBE = "unsubscribe"


# For a signal and the pinned cadence version (hash) of an enrolment: the state the
# enrolment ends in, or None when it goes on (on_reply.end false, remove_on_bounce false),
# and whether it counts as a success (on_reply.mark_success).
EndState = Callable[[SignalKind, str], tuple[str | None, bool]]


@dataclass(frozen=True, slots=True)
class SignalResult:
    new: bool
    ended: tuple[int, ...]  # enrolment ids ended by it
    cancelled_steps: int


@dataclass(frozen=True, slots=True)
class TaskFilter:
    cadence: str | None = None
    action: str | None = None
    due_before: int | None = None
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class VersionStatus:
    cadence_name: str
    cadence_hash: str
    sender: str
    enrolled: int
    active: int
    finished: dict[str, int]
    sent: int
    due: int  # planned, time come, reachable: the next run executes them
    open_tasks: int
    held: int = 0  # planned, time come, but behind an open task (R5) or an unknown send
    successes: int = 0  # enrolments a reply marked a success (on_reply.mark_success)


# Called inside a task's completion transaction with the enrolment's later steps still
# planned; returns the moves of those that move (R5, and R4 after an email task).
Shift = Callable[[StepRow, list[StepRow]], list[Move]]


class Store(Protocol):
    """Durable state of launches and runs. Every method is one transaction."""

    def close(self) -> None: ...

    def save_version(self, cadence_hash: str, name: str, source: str, data: str, now: int) -> None:
        """Keep the source of a cadence version so pinned enrolments can be rebuilt."""

    def version(self, cadence_hash: str) -> tuple[str, str]:
        """(data JSON, source text) of a stored cadence version."""

    def versions(self) -> dict[str, tuple[str, str]]:
        """Every stored version: hash → (name, data JSON)."""

    def launch(
        self, cadence_name: str, cadence_hash: str, enrolments: Iterable[NewEnrolment], now: int
    ) -> LaunchResult:
        """Enrol all at once or none; active duplicates and suppressed addresses are skipped."""

    def claim(
        self, now: int, limit: int, lease_now: float, lease_until: float, decide: Decide
    ) -> Claim:
        """Expire old leases, then claim up to `limit` due rows under one new fencing token."""

    def begin_sending(self, fence: int, ids: Iterable[int]) -> set[int]:
        """Durably mark claimed rows `sending`; returns those still ours and not stopped."""

    def stopped(self, ids: Iterable[int]) -> set[int]:
        """Of these rows, those whose enrolment ended or whose address is suppressed."""

    def finish(self, fence: int, outcomes: Iterable[Outcome], end_state: EndState) -> None:
        """Record what happened to a batch (only rows still holding `fence`)."""

    def record_signal(
        self, kind: SignalKind, email: str, cadence_name: str | None, now: int, end: EndState
    ) -> SignalResult:
        """Record a reply/bounce/unsubscribe (idempotent) and end enrolments per `end`."""

    def step_run(self, step_run_id: int) -> StepRow | None: ...

    def step_runs(self, enrolment_id: int) -> list[StepRow]: ...

    def tasks(self, where: TaskFilter) -> list[StepRow]:
        """Open tasks, oldest due first."""

    def complete_task(self, step_run_id: int, state: str, now: int, shift: Shift) -> StepRow:
        """Mark an open task done or skipped, moving later steps by `shift` (R5)."""

    def schedule_task_email(
        self, step_run_id: int, subject: str, body: str, due_utc: int
    ) -> StepRow:
        """Turn an open email task into a rep's email, sent by the runner at `due_utc`."""

    def take_task_email(
        self, step_run_id: int, subject: str, body: str, lease_until: float
    ) -> tuple[int, StepRow]:
        """Claim an open email task with a rep's text for sending now: (fence, row)."""

    def status(self, now: int) -> list[VersionStatus]: ...

    def unknown_sends(self) -> list[StepRow]: ...

    def resolve(self, step_run_id: int, sent: bool, now: int) -> StepRow:
        """Settle an `unknown` send: it was sent, or it goes out again (same Message-ID)."""

    def events(self, step_run_id: int | None = None) -> list[tuple[int, str, str, str]]:
        """The event log (at, kind, email, detail), oldest first."""


def open_store(url: str | None = None) -> Store:
    """Open the store named by `url` (a path or sqlite:///path); default `CADENCE_DB`."""
    import os

    target = url or os.environ.get("CADENCE_DB") or DEFAULT_DB
    if target.startswith(("postgresql://", "postgres://")):
        from engine.store.postgres import PostgresStore

        return PostgresStore(target)  # type: ignore[return-value]
    if target.startswith("sqlite:///"):
        target = target[len("sqlite:///") :]
    elif "://" in target:
        raise UsageError(f"unknown state store URL {target!r}", hint="give a SQLite file path")
    from engine.store.sqlite import SqliteStore

    return SqliteStore(Path(target))


def batched(items: Iterable[int], size: int = 500) -> Iterable[list[int]]:
    """Chunks small enough for SQLite's bound-parameter limit."""
    chunk: list[int] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
