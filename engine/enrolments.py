"""Operating enrolments (SPEC §11): list, show, pause, resume, remove.

Pause holds every step of the enrolment (nothing of it is claimed); resume shifts its
planned steps by the campaign days the pause lasted, as a late task does (R5); remove ends
it (nothing more is sent; its history stays). An auto-reply pause (`paused_until`) ends by
itself: the runner resumes it when that time has come (`resume_due`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .calendar import zone
from .errors import NotFound
from .lifecycle import RUNNING
from .policy import pause_moves
from .run.pinned import Versions
from .signals import check_address, check_cadence
from .store import (
    Ending,
    EnrolmentRecord,
    EnrolmentState,
    EventRecord,
    Repository,
    StepRow,
    StepState,
)


def _iso(seconds: int | None, zone_name: str = "UTC") -> str | None:
    if seconds is None:
        return None
    at = datetime.fromtimestamp(seconds, UTC).astimezone(zone(zone_name))
    return at.isoformat().replace("+00:00", "Z")


def enrolment_dict(e: EnrolmentRecord) -> dict[str, object]:
    return {
        "id": e.id,
        "cadence": e.cadence_name,
        "version": e.cadence_hash,
        "contact": e.email,
        "state": str(e.state),
        "success": e.success,
        "launched_utc": _iso(e.launched_utc),
        "ended_utc": _iso(e.ended_utc),
        "paused_utc": _iso(e.paused_utc),
        "paused_until_utc": _iso(e.paused_until),
    }


def step_dict(r: StepRow) -> dict[str, object]:
    return {
        "step": r.step_id,
        "day": r.day,
        "type": str(r.action),
        "state": str(r.state),
        "due_utc": _iso(r.due_utc),
        "due_local": _iso(r.due_utc, r.zone),
        "zone": r.zone,
        "sent_utc": _iso(r.sent_utc),
        "message_id": r.message_id,
        "answer": r.answer,
    }


def event_dict(e: EventRecord) -> dict[str, object]:
    return {
        "at_utc": _iso(e.at_utc),
        "kind": e.kind,
        "detail": e.detail,
        "source": e.source,
    }


@dataclass(frozen=True, slots=True)
class EnrolmentDetail:
    enrolment: EnrolmentRecord
    steps: tuple[StepRow, ...]

    def as_dict(self) -> dict[str, object]:
        return {**enrolment_dict(self.enrolment), "steps": [step_dict(s) for s in self.steps]}


@dataclass(frozen=True, slots=True)
class ContactView:
    email: str
    enrolments: tuple[EnrolmentDetail, ...]
    events: tuple[EventRecord, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "contact": self.email,
            "enrolments": [d.as_dict() for d in self.enrolments],
            "events": [event_dict(e) for e in self.events],
        }


def list_enrolments(
    store: Repository,
    *,
    cadence: str | None = None,
    state: EnrolmentState | None = None,
    contact: str | None = None,
) -> list[EnrolmentRecord]:
    check_cadence(store, cadence)
    email = check_address(contact) if contact is not None else None
    return store.enrolments(email=email, cadence=cadence, states=[state] if state else [])


def show(store: Repository, email: str, *, cadence: str | None = None) -> ContactView:
    """A contact's enrolments (each step: due in UTC and its zone, state, sent, Message-ID)
    and the contact's events; NotFound when the contact was never enrolled."""
    address = check_address(email, option="EMAIL")
    check_cadence(store, cadence)
    found = store.enrolments(email=address, cadence=cadence)
    if not found:
        raise NotFound(
            f"{address} is not enrolled" + (f" in {cadence!r}" if cadence else ""),
            hint="see `cadence enrolments list`",
        )
    steps = store.step_runs_of(e.id for e in found)
    return ContactView(
        address,
        tuple(EnrolmentDetail(e, tuple(steps.get(e.id, ()))) for e in found),
        tuple(store.events(email=address)),
    )


def _targets(
    store: Repository, email: str, cadence: str | None, states: Sequence[EnrolmentState]
) -> list[EnrolmentRecord]:
    address = check_address(email, option="EMAIL")
    check_cadence(store, cadence)
    found = store.enrolments(email=address, cadence=cadence, states=states)
    if not found:
        which = " or ".join(str(s) for s in states)
        raise NotFound(
            f"{address} has no {which} enrolment" + (f" in {cadence!r}" if cadence else ""),
            hint=f"see `cadence enrolments show {address}`",
        )
    return found


def pause(
    store: Repository, email: str, *, cadence: str | None, now: datetime
) -> list[EnrolmentRecord]:
    """Hold every step of the contact's active enrolments (of `cadence`)."""
    stamp = int(now.timestamp())
    targets = _targets(store, email, cadence, [EnrolmentState.ACTIVE])
    return [e for e in targets if store.pause(e.id, stamp, None, "by an operator")]


def resume(
    store: Repository, email: str, *, cadence: str | None, now: datetime
) -> list[EnrolmentRecord]:
    """Resume the contact's paused enrolments, their planned steps shifted by the pause."""
    versions = Versions(store)
    targets = _targets(store, email, cadence, [EnrolmentState.PAUSED])
    return [e for e in targets if resume_one(store, versions, e, now)]


def resume_one(
    store: Repository, versions: Versions, enrolment: EnrolmentRecord, now: datetime
) -> bool:
    paused = datetime.fromtimestamp(enrolment.paused_utc or int(now.timestamp()), UTC)
    planned = [s for s in store.step_runs(enrolment.id) if s.state is StepState.PLANNED]
    moves = pause_moves(versions.get(enrolment.cadence_hash), planned, paused, now)
    return store.resume(enrolment.id, int(now.timestamp()), moves)


def resume_due(store: Repository, versions: Versions, now: datetime) -> int:
    """Resume every pause that ends by itself (an auto-reply's) and whose time has come."""
    stamp = int(now.timestamp())
    due = [
        e
        for e in store.enrolments(states=[EnrolmentState.PAUSED])
        if e.paused_until is not None and e.paused_until <= stamp
    ]
    return sum(resume_one(store, versions, e, now) for e in due)


def remove(
    store: Repository, email: str, *, cadence: str | None, now: datetime
) -> tuple[list[EnrolmentRecord], int]:
    """End the contact's running enrolments: nothing more is sent; history is kept.
    Returns them and how many steps were cancelled."""
    stamp = int(now.timestamp())
    targets = _targets(store, email, cadence, RUNNING)
    endings = [
        Ending(e.id, e.state, EnrolmentState.REMOVED, reason="removed by an operator")
        for e in targets
    ]
    cancelled = store.end_enrolments(endings, stamp)
    for e in targets:
        store.add_event(
            EventRecord(stamp, "removed", e.email, e.cadence_name, e.id, None, "command")
        )
    return targets, cancelled
