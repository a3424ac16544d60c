"""What a contact sees: rendered emails with their thread (R3), task texts, compose links (R6).

Every template renders in the shared sandbox (engine.templates) with the context
`{"contact": contact.fields, "sender": {"name", "email"}, "unsubscribe_url": url}`.
The quoted copy under a follow-up is always the campaign template rendered for the
contact (R3), never what a rep edited in an email task.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from engine.contacts import Contact
from engine.model import Cadence, SendKind, Step, StepKind
from engine.templates import render

# Plans and previews have no enrolment yet, so no real unsubscribe token exists.
PREVIEW_UNSUBSCRIBE_URL = "https://unsubscribe.example/preview"


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """One email as sent: `body` is the step's own text, `quoted` the previous email (R3)."""

    step_id: str
    to: str
    subject: str
    body: str
    quoted: str | None = None
    thread_step_id: str | None = None

    @property
    def text(self) -> str:
        """The full text body as sent: own text, then the quoted previous email."""
        if self.quoted is None:
            return self.body
        return f"{self.body.rstrip()}\n\n{self.quoted}"


@dataclass(frozen=True, slots=True)
class TaskText:
    """What a task shows the rep: a title and rendered notes."""

    step_id: str
    title: str
    notes: str


def template_context(cadence: Cadence, contact: Contact, unsubscribe_url: str) -> dict[str, Any]:
    return {
        "contact": contact.fields,
        "sender": {"name": cadence.sender.name, "email": cadence.sender.email},
        "unsubscribe_url": unsubscribe_url,
    }


class _Thread:
    """Renders a contact's emails once each, so a follow-up chain reuses its parents."""

    def __init__(self, cadence: Cadence, contact: Contact, unsubscribe_url: str) -> None:
        self.cadence = cadence
        self.contact = contact
        self.context = template_context(cadence, contact, unsubscribe_url)
        self.done: dict[str, RenderedEmail] = {}

    def email(self, step: Step, previous_sent_at: datetime | None = None) -> RenderedEmail:
        found = self.done.get(step.id)
        if found is not None and previous_sent_at is None:
            return found
        assert step.email is not None, f"step {step.id!r} is not an email"
        template = self.cadence.templates[step.email.template]
        body = render(template.body, self.context)
        subject = render(template.subject, self.context) if template.subject else None
        quoted: str | None = None
        thread: str | None = None
        previous = self.cadence.previous_email(step)
        if step.email.follow_up and previous is not None:
            parent = self.email(previous)
            thread = previous.id
            if subject is None:
                subject = reply_subject(parent.subject)
            quoted = quote_email(
                parent.text, self.cadence.sender.name, self.cadence.sender.email, previous_sent_at
            )
        result = RenderedEmail(step.id, self.contact.email, subject or "", body, quoted, thread)
        if previous_sent_at is None:
            self.done[step.id] = result
        return result

    def task(self, step: Step) -> TaskText:
        name = (
            " ".join(
                p
                for p in (
                    self.contact.fields.get("first_name"),
                    self.contact.fields.get("last_name"),
                )
                if p
            )
            or self.contact.email
        )
        notes = render(step.notes, self.context) if step.notes else ""
        if step.kind is StepKind.CUSTOM:
            title = render(step.title or step.id, self.context)
        elif step.kind is StepKind.CALL:
            title = f"Call {name}"
        elif step.kind is StepKind.INMAIL:
            title = f"InMail {name}"
        else:
            title = f"Email {name}: {self.email(step).subject}"
        return TaskText(step.id, title, notes)


def reply_subject(subject: str) -> str:
    """`Re: <subject>`, without stacking `Re: Re:` along a follow-up chain."""
    return subject if subject[:3].lower() == "re:" else f"Re: {subject}"


def quote_email(text: str, sender_name: str, sender_email: str, sent_at: datetime | None) -> str:
    """The previous email under an attribution line, each line prefixed with `> `."""
    who = f"{sender_name} <{sender_email}>" if sender_name else sender_email
    when = f"On {sent_at:%a, %d %b %Y at %H:%M}, " if sent_at is not None else ""
    lines = text.rstrip("\n").split("\n")
    return f"{when}{who} wrote:\n" + "\n".join(f"> {x}" if x else ">" for x in lines) + "\n"


def render_email(
    cadence: Cadence,
    step: Step,
    contact: Contact,
    *,
    unsubscribe_url: str,
    previous_sent_at: datetime | None = None,
) -> RenderedEmail:
    """Render email step `step` for `contact`: subject (`Re: …` for a follow-up without its
    own subject), body, the quoted previous email (R3; dated when `previous_sent_at` is
    known, in the caller's chosen zone) and the step it replies to."""
    return _Thread(cadence, contact, unsubscribe_url).email(step, previous_sent_at)


def render_task_text(
    cadence: Cadence, step: Step, contact: Contact, *, unsubscribe_url: str = ""
) -> TaskText:
    """Title and notes of a task step (call, InMail, custom, or an email task's title)."""
    return _Thread(cadence, contact, unsubscribe_url or PREVIEW_UNSUBSCRIBE_URL).task(step)


def render_step_texts(
    cadence: Cadence, contact: Contact, *, unsubscribe_url: str
) -> dict[str, tuple[str, str]]:
    """(subject, full text) of every email step and (title, notes) of every other task."""
    thread = _Thread(cadence, contact, unsubscribe_url)
    out: dict[str, tuple[str, str]] = {}
    for step in cadence.steps:
        if step.email is not None:
            email = thread.email(step)
            out[step.id] = (email.subject, email.text)
        else:
            task = thread.task(step)
            out[step.id] = (task.title, task.notes)
    return out


def is_email_task(step: Step) -> bool:
    return step.email is not None and step.email.send.kind is SendKind.TASK


def compose_links(to: str, subject: str, body: str) -> dict[str, str]:
    """Prefilled compose windows for an email task (R6): Gmail, Outlook on the web, mailto.

    Every value is percent-encoded as UTF-8 with nothing left safe, so `&`, `+`, `#`,
    `=` and `?` in a subject or body cannot end a parameter early, and spaces are `%20`
    (a `+` would show up literally in mail clients). mailto bodies use CRLF (RFC 6068).
    """
    s, b = quote(subject, safe=""), quote(body, safe="")
    crlf_body = quote(body.replace("\r\n", "\n").replace("\n", "\r\n"), safe="")
    return {
        "gmail": f"https://mail.google.com/mail/?view=cm&fs=1&to={quote(to, safe='@')}"
        f"&su={s}&body={b}",
        "outlook": f"https://outlook.office.com/mail/deeplink/compose?to={quote(to, safe='@')}"
        f"&subject={s}&body={b}",
        "mailto": f"mailto:{quote(to, safe='@')}?subject={s}&body={crlf_body}",
    }
