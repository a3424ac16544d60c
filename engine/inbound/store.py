"""What inbound mail needs from the state store: one small protocol and its records.

Every decision (what a message is, whom it concerns, how far a pause shifts the schedule)
is made in the engine; the store only looks things up and records them atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from engine.store import EndState, Move, SignalKind, SignalResult, StepRow, Store


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where polling a mailbox got to: its UIDVALIDITY and the highest UID handled."""

    uidvalidity: int
    last_uid: int
    since_utc: int  # INTERNALDATE of the newest message handled: a rescan starts before it


@dataclass(frozen=True, slots=True)
class Enrolled:
    """An enrolment an inbound message may concern."""

    enrolment_id: int
    cadence_name: str
    cadence_hash: str
    email: str
    state: str
    first_sent_utc: int | None  # when our first email to the contact went out


@dataclass(frozen=True, slots=True)
class Handled:
    """What one message turned out to be, recorded once under its dedupe key."""

    dedupe_key: str
    uid: int
    kind: str  # reply | auto-reply | bounce | delayed | unsubscribe | ignored | own
    detail: str
    source: str  # mailbox URL + "#uid=N"
    received_utc: int
    email: str | None = None  # the contact it concerns
    signal: SignalKind | None = None  # recorded as this signal
    cadence_name: str | None = None  # a reply on one cadence's thread; None: every cadence
    pause: Enrolled | None = None  # an auto-reply pausing this enrolment
    return_date: date | None = None  # the return date the auto-reply names


@dataclass(frozen=True, slots=True)
class PausePlan:
    until_utc: int
    days: int
    moves: tuple[Move, ...]
    detail: str  # for the event log: why, and until when


@dataclass(frozen=True, slots=True)
class Paused:
    """An enrolment an auto-reply paused, and when it resumes."""

    enrolment_id: int
    cadence_name: str
    email: str
    from_utc: int
    until_utc: int
    reason: str


# Called inside the recording transaction with the paused enrolment's planned steps: the
# pause's length and the moves of those steps (an engine rule, `engine.inbound.pause`).
PlanPause = Callable[[Handled, list[StepRow]], PausePlan]


class InboundStore(Protocol):
    def cursor(self, mailbox: str) -> Cursor | None:
        """The mailbox's cursor, None before its first poll."""

    def by_message_id(self, message_ids: Collection[str]) -> dict[str, Enrolled]:
        """Of these Message-IDs, those of our step runs, with their enrolments."""

    def by_address(self, emails: Collection[str]) -> dict[str, list[Enrolled]]:
        """Enrolments of these (lower-cased) addresses, oldest first."""

    def address_of_token(self, token: str) -> str | None:
        """The address of the enrolment holding this unsubscribe token."""

    def handled(self, dedupe_keys: Collection[str]) -> set[str]:
        """Of these dedupe keys, those already handled."""

    def record_inbox(
        self,
        mailbox: str,
        cursor: Cursor,
        messages: Sequence[Handled],
        now: int,
        end: EndState,
        plan_pause: PlanPause,
    ) -> list[Handled]:
        """In one transaction: each message not handled before (insert-if-new by dedupe
        key) acts (signal, pause) and is logged with its source; the cursor moves on.
        Returns the messages that were new."""

    def record_signal(
        self,
        kind: SignalKind,
        email: str,
        cadence_name: str | None,
        now: int,
        end: EndState,
        source: str,
    ) -> SignalResult:
        """`Store.record_signal`, its event logged with where the signal came from."""

    def paused(self, now: int) -> list[Paused]:
        """Enrolments an auto-reply holds at `now`, soonest resumed first."""


def inbound_store(store: Store) -> InboundStore:
    """The inbound view of a state store."""
    from engine.store.sqlite import SqliteStore
    from engine.store.sqlite_inbound import SqliteInboundStore

    if not isinstance(store, SqliteStore):
        raise TypeError(f"no inbound store for {type(store).__name__}")
    return SqliteInboundStore(store)
