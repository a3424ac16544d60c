"""The message of one step run: the rep's text if any, else the template (R3).

A follow-up replies in the thread of the email before it only when that email was sent:
otherwise (its email task skipped, or stopped) it goes as a new thread, with no `Re:`, no
`In-Reply-To`/`References` to a Message-ID that never went out, and no quote of an email
the contact never got. When a rep changed the subject of the email it replies to, its
subject is `Re: <the subject that was sent>` (threads follow the subject); the quoted
body stays the template's (R3).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from ..calendar import zone
from ..contacts import Contact
from ..delivery import Outgoing, build_message, thread_ids, unsubscribe_url
from ..messages import render_email, reply_subject
from ..model import Cadence
from ..plan import Action
from ..store import StepRow, StepState
from ..unsubscribe import LinkForm
from .pinned import contact_of


def render(
    cadence: Cadence, row: StepRow, at: datetime, enrolment: Sequence[StepRow], links: LinkForm
) -> Outgoing:
    """Build the whole message of `row` dated `at`. `enrolment`: the step runs of its
    enrolment, which tell which emails of the thread went out and when; `links`: the
    unsubscribe URL form."""
    assert row.message_id is not None
    contact = contact_of(row)
    url = unsubscribe_url(cadence, row.unsubscribe_token, links)
    references: list[str] = []
    if row.thread_step_id is not None and row.thread_sent_utc is not None:
        sent = {
            s.message_id
            for s in enrolment
            if s.state is StepState.SENT and s.message_id is not None
        }
        ids = thread_ids(cadence, cadence.step(row.step_id), row.uid)
        references = [r for r in ids if r in sent]
    subject, text = message_text(cadence, row, contact, enrolment, url)
    name = " ".join(
        p for p in (contact.fields.get("first_name"), contact.fields.get("last_name")) if p
    )
    return build_message(
        cadence=cadence,
        to_name=name,
        to_email=contact.email,
        subject=subject,
        text=text,
        msg_id=row.message_id,
        references=references,
        date=at,
        unsubscribe=url,
        unsubscribe_token=row.unsubscribe_token,
    )


def message_text(
    cadence: Cadence, row: StepRow, contact: Contact, enrolment: Iterable[StepRow], url: str
) -> tuple[str, str]:
    """The subject and text `row`'s email to `contact` goes out with: the rep's words if
    any, else the template with the quote of the thread (R3), `url` as
    `{{ unsubscribe_url }}`."""
    if row.by_hand and row.body is not None:
        return row.subject or "", row.body
    in_thread = row.thread_step_id is not None and row.thread_sent_utc is not None
    email = render_email(
        cadence,
        cadence.step(row.step_id),
        contact,
        unsubscribe_url=url,
        thread_sent_at=quote_times(enrolment, row.zone) if in_thread else None,
    )
    if row.thread_step_id is not None and not in_thread:
        # A new thread: the step's own words under the subject the chain started with.
        return _unreplied(email.subject), email.body
    if row.thread_subject is not None:
        return reply_subject(row.thread_subject), email.text
    return email.subject, email.text


def _unreplied(subject: str) -> str:
    return subject[4:] if subject[:4].lower() == "re: " else subject


def quote_times(enrolment: Iterable[StepRow], zone_name: str) -> dict[str, datetime]:
    """When each email of an enrolment went out, by step id, in `zone_name`: the dates
    its follow-ups' quotes carry (R3). Sent, or (an email task) marked done by the rep
    who sent it elsewhere."""
    tz = zone(zone_name)
    times: dict[str, datetime] = {}
    for s in enrolment:
        if s.action not in (Action.SEND_EMAIL, Action.EMAIL_TASK):
            continue
        t = s.sent_utc
        if t is None and s.state is StepState.DONE:
            t = s.done_utc
        if t is not None:
            times[s.step_id] = datetime.fromtimestamp(t, UTC).astimezone(tz)
    return times
