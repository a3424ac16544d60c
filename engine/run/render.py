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
from ..delivery import Outgoing, build_message, thread_ids, unsubscribe_url
from ..messages import render_email, reply_subject
from ..model import Cadence
from ..plan import Action
from ..store import StepRow, StepState
from ..unsubscribe import LinkForm
from .pinned import contact_of


def render(
    cadence: Cadence,
    row: StepRow,
    at: datetime,
    enrolment: Sequence[StepRow] | None = None,
    links: LinkForm | None = None,
) -> Outgoing:
    """Build the whole message of `row` dated `at`. `enrolment`: the step runs of its
    enrolment, which tell which emails of the thread went out and when (None: the
    thread's own email tells, and only its time is known); `links`: the unsubscribe URL
    form (None: read from the environment)."""
    assert row.message_id is not None
    step = cadence.step(row.step_id)
    contact = contact_of(row)
    url = unsubscribe_url(cadence, row.unsubscribe_token, links)
    in_thread = row.thread_step_id is not None and row.thread_sent_utc is not None
    references = thread_ids(cadence, step, row.uid) if in_thread else []
    if enrolment is not None:
        sent = {
            s.message_id
            for s in enrolment
            if s.state is StepState.SENT and s.message_id is not None
        }
        references = [r for r in references if r in sent]
    if row.by_hand and row.body is not None:
        subject, text = row.subject or "", row.body
    else:
        tz = zone(row.zone)
        previous_at = (
            datetime.fromtimestamp(row.thread_sent_utc, UTC).astimezone(tz)
            if row.thread_sent_utc is not None
            else None
        )
        # Every quoted level is dated with its email's real send time (R3).
        earlier = (
            {
                step_id: datetime.fromtimestamp(t, UTC).astimezone(tz)
                for step_id, t in sent_times(enrolment).items()
            }
            if in_thread and enrolment is not None
            else None
        )
        email = render_email(
            cadence,
            step,
            contact,
            unsubscribe_url=url,
            previous_sent_at=previous_at,
            thread_sent_at=earlier,
        )
        subject, text = email.subject, email.text
        if row.thread_step_id is not None and not in_thread:
            # A new thread: the step's own words under the subject the chain started with.
            subject, text = _unreplied(email.subject), email.body
        elif row.thread_subject is not None:
            subject = reply_subject(row.thread_subject)
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


def _unreplied(subject: str) -> str:
    return subject[4:] if subject[:4].lower() == "re: " else subject


def sent_times(enrolment: Iterable[StepRow]) -> dict[str, int]:
    """When each email of an enrolment went out, by step id: sent, or (an email task)
    marked done by the rep who sent it elsewhere."""
    times: dict[str, int] = {}
    for s in enrolment:
        if s.action not in (Action.SEND_EMAIL, Action.EMAIL_TASK):
            continue
        t = (
            s.sent_utc
            if s.sent_utc is not None
            else (s.done_utc if s.state is StepState.DONE else None)
        )
        if t is not None:
            times[s.step_id] = t
    return times
