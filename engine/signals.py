"""Signals (SPEC §7 "signals win"): reply, bounce and unsubscribe for a contact.

Recording is idempotent. A reply ends the contact's enrolments per each pinned version's
`on_reply` (in one cadence with `--cadence`, else in all); a bounce or unsubscribe also
suppresses the address for every cadence, and ends enrolments per `remove_on_bounce`
(unsubscribe always ends them).
"""

from __future__ import annotations

from datetime import datetime

from engine.runner import Versions
from engine.store import SignalKind, SignalResult, Store


def record(
    store: Store, kind: SignalKind, email: str, *, cadence: str | None, now: datetime
) -> SignalResult:
    versions = Versions(store)
    return store.record_signal(
        kind, email.strip().lower(), cadence, int(now.timestamp()), versions.end_state
    )
