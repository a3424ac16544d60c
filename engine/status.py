"""`cadence status` and `cadence resolve`: what the runner did, and unknown sends settled.

Unknown sends are emails whose runner stopped between committing `sending` and recording
the outcome: they may or may not have been delivered. A `sending` row whose lease is over
counts as one at once (a crashed run's), before any later run converts it. Nothing
resends them automatically; `resolve KEY --sent` records them as sent, `--resend` makes
them due again with the same Message-ID (a server that did get the first copy can
recognise the second).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import NotFound, UsageError
from .store import (
    EnrolmentRecord,
    EnrolmentState,
    Repository,
    StepRow,
    StepState,
    VersionStatus,
)
from .tasks import finish_enrolment


@dataclass(frozen=True, slots=True)
class UnknownSend:
    key: int
    cadence: str
    contact: str
    step_id: str
    message_id: str
    reason: str
    cadence_hash: str = ""  # the pinned version (who may see it: its sender)

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
    """A paused enrolment, and when it resumes by itself (an auto-reply's pause)."""

    email: str
    cadence_name: str
    since: datetime | None
    until: datetime | None  # None: paused by an operator, until `enrolments resume`
    reason: str
    cadence_hash: str = ""  # the pinned version (who may see it: its sender)

    def as_dict(self) -> dict[str, object]:
        return {
            "contact": self.email,
            "cadence": self.cadence_name,
            "since": self.since.isoformat() if self.since else None,
            "resumes": self.until.isoformat() if self.until else None,
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
                    "paused": v.paused,
                    "finished": v.finished,
                    "successes": v.successes,
                    "sent": v.sent,
                    "due": v.due,
                    "held": v.held,
                    "open_tasks": v.open_tasks,
                    "failed": v.failed,
                    "retrying": v.retrying,
                    "in_flight": {"claimed": v.claimed, "sending": v.sending},
                    "unknown": v.unknown,
                }
                for v in self.versions
            ],
            "unknown_sends": [u.as_dict() for u in self.unknown],
            "paused": [p.as_dict() for p in self.paused],
        }


def _unknown(row: StepRow) -> UnknownSend:
    reason = row.answer or ""
    if row.state is StepState.SENDING:
        reason = "runner stopped while sending (its lease is over)"
    return UnknownSend(
        key=row.id,
        cadence=row.cadence_name,
        contact=row.email,
        step_id=row.step_id,
        message_id=row.message_id or "",
        reason=reason,
        cadence_hash=row.cadence_hash,
    )


def status(store: Repository, now: datetime) -> StatusReport:
    return StatusReport(
        versions=tuple(store.status(int(now.timestamp()))),
        unknown=tuple(_unknown(r) for r in store.unknown_sends()),
        paused=tuple(paused_enrolments(store)),
    )


def paused_enrolments(store: Repository) -> list[PausedEnrolment]:
    """Paused enrolments, those that resume by themselves (an auto-reply's) soonest first,
    then those paused by an operator; each with the reason its pause was logged with."""

    def at(seconds: int | None) -> datetime | None:
        return None if seconds is None else datetime.fromtimestamp(seconds, UTC)

    def reason(e: EnrolmentRecord) -> str:
        for event in store.events(enrolment_id=e.id, newest_first=True, limit=20):
            if event.kind == "paused":
                return event.detail
        return ""

    found = store.enrolments(states=[EnrolmentState.PAUSED])
    found.sort(key=lambda e: (e.paused_until is None, e.paused_until or 0, e.id))
    return [
        PausedEnrolment(
            e.email, e.cadence_name, at(e.paused_utc), at(e.paused_until), reason(e), e.cadence_hash
        )
        for e in found
    ]


def parse_key(key: str) -> int:
    """A send's key as `status` prints it (a number; `#12` is accepted too)."""
    try:
        return int(key.lstrip("#"))
    except ValueError:
        raise UsageError(
            f"{key!r} is not a send key", hint="copy it from `cadence status`"
        ) from None


def resolve(
    store: Repository,
    keys: Sequence[str] = (),
    *,
    sent: bool,
    every: bool = False,
    cadence: str | None = None,
    now: datetime | None = None,
) -> list[UnknownSend]:
    """Settle unknown sends: the ones named by `keys`, or `every` one (of `cadence`).

    Every key is checked before anything changes: a key that does not exist is NotFound,
    one that is not an unknown send a UsageError.
    """
    stamp = int((now or datetime.now(UTC)).timestamp())
    unknown = {r.id: r for r in store.unknown_sends()}
    if every:
        rows = [r for r in unknown.values() if cadence is None or r.cadence_name == cadence]
    else:
        rows = []
        for key in keys:
            number = parse_key(key)
            if number in unknown:
                rows.append(unknown[number])
                continue
            row = store.step_run(number)
            if row is None or row.message_id is None:
                raise NotFound(f"no send with key {number}", hint="see `cadence status`")
            raise UsageError(f"send {number} is {row.state}, not unknown")
    done: list[UnknownSend] = []
    for row in rows:
        if store.resolve(row.id, sent, stamp):
            finish_enrolment(store, row.enrolment_id, stamp)
            done.append(_unknown(row))
    return done
