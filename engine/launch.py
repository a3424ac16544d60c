"""`cadence launch`: validate, plan and enrol a contact list — all of it or none of it.

The cadence version (its source and data) is stored under its content hash first, and
every enrolment is pinned to that hash: editing the file later never changes what these
contacts get. The enrolments themselves go in one write transaction.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .compiler import check_launch, rows_for, schedule_contacts
from .contacts import Contact, RowError, read_contacts
from .delivery import message_id
from .messages import PREVIEW_UNSUBSCRIBE_URL, render_step_texts
from .model import Cadence
from .plan import Action
from .run.pinned import contact_json
from .schedule import Launch
from .store import NewEnrolment, NewStep, Store
from .validate import load_cadence
from .when import parse_send_at, parse_when

_EMAIL_ACTIONS = (Action.SEND_EMAIL, Action.EMAIL_TASK)


@dataclass(frozen=True, slots=True)
class LaunchReport:
    cadence: str
    cadence_hash: str
    enrolled: int
    already_enrolled: tuple[str, ...]
    suppressed: tuple[str, ...]
    skipped_rows: tuple[RowError, ...]
    warnings: tuple[str, ...] = ()  # about the contact list (a column that looks like a zone)
    overlapping: tuple[tuple[str, str], ...] = ()  # (email, the cadence it is active in)

    def as_dict(self) -> dict[str, object]:
        return {
            "cadence": self.cadence,
            "version": self.cadence_hash,
            "enrolled": self.enrolled,
            "already_enrolled": list(self.already_enrolled),
            "suppressed": list(self.suppressed),
            "overlapping": [{"email": e, "active_in": c} for e, c in self.overlapping],
            "skipped_rows": [str(e) for e in self.skipped_rows],
            "warnings": list(self.warnings),
        }


def launch(
    store: Store,
    cadence_path: Path,
    contacts_path: Path,
    *,
    now: datetime,
    start: str = "now",
    send_at: str | None = None,
    skip_invalid: bool = False,
    contacts_format: str | None = None,
    allow_overlap: bool = False,
    progress: Callable[[int], None] | None = None,
) -> LaunchReport:
    """Enrol every contact of `contacts_path` in the cadence at `cadence_path`.

    Raises UsageError (bad WHEN, `choose_at_launch` without `send_at`) or InputError (bad
    cadence, bad contact rows without `skip_invalid`, a template that fails to render for
    a contact) before anything is enrolled. A contact active in another cadence is
    skipped and reported (SPEC §11) unless `allow_overlap`.
    """
    cadence = load_cadence(cadence_path)
    zone_name = cadence.settings.default_timezone
    plan_launch = Launch(
        start=parse_when(start, zone_name, now=now),
        send_at=parse_send_at(send_at, zone_name, now=now) if send_at else None,
    )
    check_launch(cadence, plan_launch)
    contacts = read_contacts(contacts_path, skip_invalid=skip_invalid, fmt=contacts_format)
    contacts.prepare()  # bad rows fail here, before anything is stored
    source = cadence_path.read_text(encoding="utf-8")
    stamp = int(now.timestamp())
    store.save_version(
        cadence.content_hash,
        cadence.name,
        source,
        json.dumps(cadence.data, sort_keys=True, default=str, ensure_ascii=False),
        stamp,
    )
    result = store.launch(
        cadence.name,
        cadence.content_hash,
        _enrolments(cadence, contacts, plan_launch, progress),
        stamp,
        allow_overlap=allow_overlap,
    )
    return LaunchReport(
        cadence=cadence.name,
        cadence_hash=cadence.content_hash,
        enrolled=len(result.enrolled),
        already_enrolled=result.already_enrolled,
        suppressed=result.suppressed,
        skipped_rows=tuple(contacts.skipped),
        warnings=tuple(contacts.warnings),
        overlapping=result.overlapping,
    )


def _enrolments(
    cadence: Cadence,
    contacts: Iterable[Contact],
    plan_launch: Launch,
    progress: Callable[[int], None] | None,
) -> Iterator[NewEnrolment]:
    sender = cadence.sender.email
    for n, (contact, schedule) in enumerate(
        schedule_contacts(cadence, contacts, plan_launch), start=1
    ):
        # Every text renders now, in the launch transaction: a template that fails for
        # this contact (a division by zero, a value the sandbox refuses) stops the whole
        # launch like a bad row, instead of surfacing later as a failed send.
        render_step_texts(cadence, contact, unsubscribe_url=PREVIEW_UNSUBSCRIBE_URL)
        uid = uuid.uuid4().hex
        steps = tuple(
            NewStep(
                step_id=row.step_id,
                step_index=row.step_index,
                day=row.day,
                action=row.action,
                zone=row.zone,
                due_utc=int(row.due_utc.timestamp()),
                thread_step_id=row.thread_step_id,
                message_id=(
                    message_id(cadence.name, uid, row.step_id, sender)
                    if row.action in _EMAIL_ACTIONS
                    else None
                ),
            )
            for row in rows_for(cadence, contact, schedule)
        )
        yield NewEnrolment(
            email=contact.email.lower(),
            contact=contact_json(contact),
            uid=uid,
            unsubscribe_token=secrets.token_urlsafe(16),
            steps=steps,
        )
        if progress is not None and n % 500 == 0:
            progress(n)
