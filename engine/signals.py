"""Signals (SPEC §7 "signals win"): reply, bounce and unsubscribe for a contact.

Recording is idempotent. A reply ends the contact's enrolments per each pinned version's
`on_reply` (in one cadence with `--cadence`, else in all); a bounce or unsubscribe also
suppresses the address for every cadence, and ends enrolments per `remove_on_bounce`
(unsubscribe always ends them).
"""

from __future__ import annotations

from datetime import datetime

from engine.errors import UsageError
from engine.inbound.store import inbound_store
from engine.runner import Versions
from engine.store import SignalKind, SignalResult, Store


def record(
    store: Store,
    kind: SignalKind,
    email: str,
    *,
    cadence: str | None,
    now: datetime,
    source: str = "command",
) -> SignalResult:
    """Record a signal, logged with its `source`; UsageError for an address that is not
    one or an unknown cadence."""
    address = email.strip().lower()
    local, _, domain = address.partition("@")
    if not local or not domain or any(c.isspace() for c in address):
        raise UsageError(f"--contact {email!r} is not an email address")
    if cadence is not None:
        names = sorted({name for name, _ in store.versions().values()})
        if cadence not in names:
            known = ", ".join(repr(n) for n in names) or "none launched yet"
            raise UsageError(
                f"--cadence {cadence!r}: no such cadence in the state store", hint=f"known: {known}"
            )
    versions = Versions(store)
    return inbound_store(store).record_signal(
        kind, address, cadence, int(now.timestamp()), versions.end_state, source
    )
