"""Signals (SPEC §7 "signals win"): reply, bounce, unsubscribe and auto-reply for a contact.

Recording is idempotent. A reply ends the contact's enrolments per each pinned version's
`on_reply` (in one cadence when it names one, else in all); a bounce or unsubscribe also
suppresses the address for every cadence, and ends enrolments per `remove_on_bounce`
(unsubscribe always ends them). Every signal lands in the event log with its source.
The rules are `engine.lifecycle`; this module applies them to a store.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from .contacts import is_email
from .errors import UsageError
from .lifecycle import RUNNING, signal_endings, suppresses
from .run.pinned import Versions
from .store import Repository, Signal, SignalKind


class SignalResult(NamedTuple):
    new: bool  # False: the same signal was recorded before
    ended: tuple[int, ...]  # enrolment ids it ended
    cancelled_steps: int


def apply_signal(store: Repository, versions: Versions, signal: Signal) -> SignalResult:
    """Record `signal` and apply what it ends (each step idempotent, so a retry after a
    crash completes it)."""
    new = store.record_signal(signal)
    if suppresses(signal.kind):
        store.suppress(signal.email, str(signal.kind), signal.at_utc)
    endings = signal_endings(
        signal.kind, store.enrolments(email=signal.email), versions.get, signal.cadence_name
    )
    cancelled = store.end_enrolments(endings, signal.at_utc)
    ended = tuple(
        e.enrolment_id for e in endings if e.expected in RUNNING and e.state != e.expected
    )
    return SignalResult(new=new, ended=ended, cancelled_steps=cancelled)


def check_address(email: str, *, option: str = "--contact") -> str:
    """The lower-cased address, or UsageError: the same check as for contact lists."""
    address = email.strip().lower()
    if not is_email(address):
        raise UsageError(f"{option} {email!r} is not an email address")
    return address


def check_cadence(store: Repository, cadence: str | None) -> None:
    """UsageError unless `cadence` (when given) names a launched cadence."""
    if cadence is None:
        return
    names = sorted({name for name, _ in store.versions().values()})
    if cadence not in names:
        known = ", ".join(repr(n) for n in names) or "none launched yet"
        raise UsageError(
            f"--cadence {cadence!r}: no such cadence in the state store", hint=f"known: {known}"
        )


def record(
    store: Repository,
    kind: SignalKind,
    email: str,
    *,
    cadence: str | None,
    now: datetime,
    source: str = "command",
) -> SignalResult:
    """Record a signal; UsageError for an address that is not one or an unknown cadence."""
    address = check_address(email)
    check_cadence(store, cadence)
    signal = Signal(kind, address, cadence, int(now.timestamp()), source)
    return apply_signal(store, Versions(store), signal)
