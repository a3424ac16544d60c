"""`cadence preview`: every step as one contact will see it (emails) or a rep will (tasks).

Follow-ups show the quoted previous email (always the template rendering, R3); email
tasks show the compose view and prefilled Gmail, Outlook and mailto links (R6). When the
launch can be planned, each step shows its due time and the quote its date.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from ..calendar import scheduling_zone_name
from ..contacts import Contact, read_contacts
from ..delivery import clean
from ..errors import UsageError
from ..messages import (
    PREVIEW_UNSUBSCRIBE_URL,
    compose_links,
    render_email,
    render_task_text,
)
from ..model import Cadence
from ..plan import Action, DependencyKind
from ..schedule import ContactSchedule, Slot, action_of

SAMPLE_FIELDS = {
    "email": "alex.morgan@example.com",
    "first_name": "Alex",
    "last_name": "Morgan",
    "company": "Example Corp",
    "title": "Head of Platform",
    "phone": "+1 555 0100",
    "linkedin_url": "https://www.linkedin.com/in/alex-morgan-example",
}
RULE = "─" * 72


def sample_contact(cadence: Cadence) -> Contact:
    """A built-in contact; a field the cadence declares has no sample value of its own, so
    the template's filters decide: `default("your")` gives `your`, while a bare
    `{{ contact.team_size }}` shows `[team_size]` (and `| upper` shows `[TEAM_SIZE]`)."""
    from jinja2 import Undefined

    class SampleField(Undefined):
        """Undefined to filters and tests; printed, the field's name in brackets."""

        __slots__ = ()

        def __str__(self) -> str:
            return f"[{self._undefined_name}]"

    fields: dict[str, Any] = dict(SAMPLE_FIELDS)
    for name in cadence.contact_fields:
        fields.setdefault(name, SampleField(name=name))
    return Contact(fields["email"], fields, None, 0)


def address_contact(email: str) -> Contact:
    """A contact known only by its address (`preview --contact EMAIL` without a list)."""
    from ..contacts import is_email

    address = email.strip()
    if not is_email(address):
        raise UsageError(f"--contact {email!r} is not an email address")
    return Contact(address, {"email": address}, None, 0)


def find_contact(path: Path, email: str, *, fmt: str | None = None) -> Contact:
    """The contact with address `email` (any case); bad rows elsewhere do not matter here."""
    wanted = email.strip().lower()
    for contact in read_contacts(path, skip_invalid=True, fmt=fmt):
        if contact.email.lower() == wanted:
            return contact
    raise UsageError(f"no contact {email!r} in {path}", hint="check --contact against the list")


def _schedule(
    cadence: Cadence, contact: Contact, start: str, send_at: str | None, now: datetime
) -> ContactSchedule | None:
    from ..compiler import Scheduler, parse_launch

    try:
        return Scheduler(cadence, parse_launch(cadence, start, send_at, now=now)).schedule(contact)
    except UsageError as exc:
        if "choose_at_launch" in exc.message:  # a preview is still useful without dates
            return None
        raise


def _when(slot: Slot | None) -> str:
    if slot is None:
        return "time chosen at launch (pass --send-at to see dates)"
    text = slot.due_local.strftime("%a %Y-%m-%d %H:%M %Z")
    return text + (f" (moved: {slot.moved})" if slot.moved else "")


def _holds(slot: Slot | None) -> list[str]:
    if slot is None:
        return []
    out = []
    for dep in slot.depends_on:
        if dep.kind is DependencyKind.TASK:
            out.append(f"Held until task {dep.step_id} is done or skipped.")
        else:
            out.append(f"Sent at the time of day {dep.step_id} is actually sent (R4).")
    return out


def render_preview(
    cadence: Cadence, contact: Contact, *, start: str, send_at: str | None, now: datetime
) -> str:
    schedule = _schedule(cadence, contact, start, send_at, now)
    slots = {s.step.id: s for s in schedule.slots} if schedule else {}
    # A quoted email is dated with its planned time when that is when it goes out
    # (an automatic email not waiting on a hand-sent one); else it is left undated.
    planned = {
        sid: slot.due_local
        for sid, slot in slots.items()
        if slot.action is Action.SEND_EMAIL
        and all(d.kind is not DependencyKind.SENT_TIME for d in slot.depends_on)
    }
    # Header lines as the message builder writes them (`delivery.clean`): one line each.
    name = clean(
        " ".join(
            p for p in (contact.fields.get("first_name"), contact.fields.get("last_name")) if p
        )
    )
    to = f"{name} <{contact.email}>" if name else contact.email
    sender = f"{cadence.sender.name} <{cadence.sender.email}>"
    # The zone is the contact's own (or the default) whether or not times are known yet.
    zone = schedule.zone if schedule else scheduling_zone_name(cadence, contact.timezone)
    out = [f"Preview: {cadence.name}", f"Contact: {to} ({zone})", ""]
    total = len(cadence.steps)
    for step in cadence.steps:
        slot = slots.get(step.id)
        action = action_of(step)
        out += [
            RULE,
            f"Step {step.index + 1}/{total} · {step.id} · day {step.day} · {action}",
            f"Due: {_when(slot)}",
            *_holds(slot),
        ]
        if step.email is None:
            task = render_task_text(cadence, step, contact)
            out += [f"Task: {clean(task.title)}"]
            if task.notes:
                out += ["Notes:", *(f"  {line}" for line in task.notes.splitlines())]
            out.append("")
            continue
        email = render_email(
            cadence,
            step,
            contact,
            unsubscribe_url=PREVIEW_UNSUBSCRIBE_URL,
            thread_sent_at=planned,
        )
        if action is Action.EMAIL_TASK:
            out.append("Email task: compose view (the rep may edit, then send or schedule)")
        out += [f"From: {sender}", f"To: {to}", f"Subject: {clean(email.subject)}"]
        if email.thread_step_id:
            out.append(f"In reply to: step {email.thread_step_id} (same thread)")
        out += ["", email.text.rstrip("\n"), ""]
        if action is Action.EMAIL_TASK:
            links = compose_links(contact.email, email.subject, email.text)
            out += [
                "Open a prefilled compose window:",
                f"  Gmail:   {links['gmail']}",
                f"  Outlook: {links['outlook']}",
                f"  mailto:  {links['mailto']}",
                "",
            ]
    return "\n".join(out)
