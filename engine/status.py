"""`cadence status` and `cadence resolve`: what the runner did, and unknown sends settled.

Unknown sends are emails whose runner stopped between committing `sending` and recording
the outcome: they may or may not have been delivered. Nothing resends them automatically;
`resolve KEY --sent` records them as sent, `--resend` makes them due again with the same
Message-ID (a server that did get the first copy can recognise the second).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from engine.errors import UsageError
from engine.store import StepRow, Store, VersionStatus


@dataclass(frozen=True, slots=True)
class UnknownSend:
    key: int
    cadence: str
    contact: str
    step_id: str
    message_id: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "cadence": self.cadence,
            "contact": self.contact,
            "step": self.step_id,
            "message_id": self.message_id,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class PausedEnrolment:
    """An enrolment an auto-reply holds, and when it resumes."""

    email: str
    cadence_name: str
    since: datetime
    until: datetime
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {
            "contact": self.email,
            "cadence": self.cadence_name,
            "since": self.since.isoformat(),
            "resumes": self.until.isoformat(),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class StatusReport:
    versions: tuple[VersionStatus, ...]
    unknown: tuple[UnknownSend, ...]
    paused: tuple[PausedEnrolment, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "cadences": [
                {
                    "cadence": v.cadence_name,
                    "version": v.cadence_hash,
                    "sender": v.sender,
                    "enrolled": v.enrolled,
                    "active": v.active,
                    "finished": v.finished,
                    "successes": v.successes,
                    "sent": v.sent,
                    "due": v.due,
                    "held": v.held,
                    "open_tasks": v.open_tasks,
                }
                for v in self.versions
            ],
            "unknown_sends": [u.as_dict() for u in self.unknown],
            "paused": [p.as_dict() for p in self.paused],
        }


def _unknown(row: StepRow) -> UnknownSend:
    return UnknownSend(
        key=row.id,
        cadence=row.cadence_name,
        contact=row.email,
        step_id=row.step_id,
        message_id=row.message_id or "",
        reason=row.answer or "",
    )


def status(store: Store, now: datetime) -> StatusReport:
    from engine.inbound.store import inbound_store

    def at(seconds: int) -> datetime:
        return datetime.fromtimestamp(seconds, UTC)

    return StatusReport(
        versions=tuple(store.status(int(now.timestamp()))),
        unknown=tuple(_unknown(r) for r in store.unknown_sends()),
        paused=tuple(
            PausedEnrolment(p.email, p.cadence_name, at(p.from_utc), at(p.until_utc), p.reason)
            for p in inbound_store(store).paused(int(now.timestamp()))
        ),
    )


def parse_key(key: str) -> int:
    """A send's key as `status` prints it (a number; `#12` is accepted too)."""
    try:
        return int(key.lstrip("#"))
    except ValueError:
        raise UsageError(
            f"{key!r} is not a send key", hint="copy it from `cadence status`"
        ) from None


def resolve(store: Store, key: str, *, sent: bool, now: datetime | None = None) -> UnknownSend:
    when = now or datetime.now(UTC)
    return _unknown(store.resolve(parse_key(key), sent, int(when.timestamp())))
