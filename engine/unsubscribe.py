"""One-click unsubscribe by an enrolment's token (RFC 8058; SPEC §8, §9).

The token (in every message's List-Unsubscribe) names one enrolment; the unsubscribe it
records is the contact's, for every cadence, through the same signal path as
`cadence event unsubscribe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.errors import NotFound
from engine.signals import record
from engine.store import Repository, SignalKind


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    email: str
    new: bool  # False when the address was already unsubscribed
    ended: tuple[int, ...]  # enrolment ids it ended
    source: str


def unsubscribe_by_token(
    store: Repository, token: str, *, source: str, now: datetime
) -> Unsubscribed:
    """Unsubscribe the contact whose enrolment carries `token`, the signal logged with
    `source`; NotFound (nothing changed) for a token no enrolment has."""
    found = store.enrolment_by_token(token) if token else None
    if found is None:
        raise NotFound("unknown unsubscribe token", hint="copy it from the message's link")
    result = record(
        store, SignalKind.UNSUBSCRIBE, found.email, cadence=None, now=now, source=source
    )
    return Unsubscribed(email=found.email, new=result.new, ended=result.ended, source=source)
