"""The task queue (R5, R6): list, show with compose links, done, skip, and send email tasks.

Tasks are step runs the runner opened when they came due. While one is open, the
contact's later steps are held; completing it late shifts them by the lateness in whole
campaign days (`engine.policy.later_moves`), so gaps are kept and nothing bursts out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from .calendar import zone
from .delivery import clean, clean_body, unsubscribe_url
from .errors import CadenceError, NotFound, UsageError
from .findings import with_article
from .lifecycle import completed
from .messages import compose_links, render_email, render_task_text
from .plan import Action
from .policy import later_moves
from .run.clock import Clock
from .run.loop import DEFAULT_LEASE, Runner
from .run.pinned import Versions, contact_of
from .signals import check_cadence
from .store import (
    Ending,
    EnrolmentState,
    Repository,
    StepRow,
    StepState,
    Store,
    TaskFilter,
)
from .transports import Transport


@dataclass(frozen=True, slots=True)
class TaskView:
    id: int
    cadence: str
    action: str
    contact: str
    step_id: str
    due: datetime
    zone: str
    title: str
    notes: str
    state: str = "open"  # open, or done / skipped / planned (scheduled) / sent / cancelled
    subject: str | None = None
    body: str | None = None
    links: dict[str, str] | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id,
            "cadence": self.cadence,
            "type": self.action,
            "contact": self.contact,
            "step": self.step_id,
            "due_utc": self.due.isoformat().replace("+00:00", "Z"),
            "due_local": self.due.astimezone(zone(self.zone)).isoformat(),
            "title": self.title,
            "notes": self.notes,
            "state": self.state,
        }
        if self.subject is not None:
            out.update(subject=self.subject, body=self.body, links=self.links)
        return out


def view(versions: Versions, row: StepRow, *, compose: bool = False) -> TaskView:
    """A task as a rep sees it; `compose` adds the rendered email and its links (R6)."""
    cadence = versions.get(row.cadence_hash)
    step = cadence.step(row.step_id)
    contact = contact_of(row)
    url = unsubscribe_url(cadence, row.unsubscribe_token)
    text = render_task_text(cadence, step, contact, unsubscribe_url=url)
    subject = body = None
    links = None
    if compose and row.action == Action.EMAIL_TASK and row.state is StepState.OPEN:
        email = render_email(cadence, step, contact, unsubscribe_url=url)
        # As the message builder will write them: a subject (and a title) is one line.
        subject, body = clean(email.subject), clean_body(email.text)
        links = compose_links(contact.email, subject, body)
    return TaskView(
        id=row.id,
        cadence=row.cadence_name,
        action=row.action,
        contact=contact.email,
        step_id=row.step_id,
        due=datetime.fromtimestamp(row.due_utc, UTC),
        zone=row.zone,
        title=clean(text.title),
        notes=text.notes,
        state=row.state,
        subject=subject,
        body=body,
        links=links,
    )


def list_tasks(store: Repository, where: TaskFilter) -> list[TaskView]:
    """Open tasks matching `where`; UsageError for a cadence the store never launched."""
    check_cadence(store, where.cadence)
    versions = Versions(store)
    return [view(versions, row) for row in store.tasks(where)]


def _task(store: Repository, task_id: int) -> StepRow:
    row = store.step_run(task_id)
    if row is None or (row.action == Action.SEND_EMAIL and not row.by_hand):
        raise NotFound(f"no task {task_id}", hint="see `cadence tasks list`")
    return row


def _not_open(row: StepRow) -> UsageError:
    if row.state is StepState.PLANNED and row.by_hand:
        when = datetime.fromtimestamp(row.due_utc, UTC)
        return UsageError(
            f"task {row.id} is already scheduled to be sent at {when:%Y-%m-%d %H:%M} UTC",
            hint="the runner sends it then; to change the time or the text, wait for it "
            "to go out or stop it with `cadence enrolments remove`",
        )
    return UsageError(f"task {row.id} is not open (it is {row.state})")


def show_task(store: Repository, task_id: int) -> TaskView:
    """A task as `tasks show` prints it; compose links only while it is open."""
    return view(Versions(store), _task(store, task_id), compose=True)


def complete_task(store: Repository, task_id: int, state: str, now: datetime) -> StepRow:
    """Mark a task done or skipped; later steps shift by its lateness (R5) and, for an
    email task sent by hand, `same_time_as_previous` takes its real send time (R4)."""
    row = _task(store, task_id)
    if row.state is not StepState.OPEN:
        raise _not_open(row)
    versions = Versions(store)
    later = [
        r
        for r in store.step_runs(row.enrolment_id)
        if r.step_index > row.step_index and r.state is StepState.PLANNED
    ]
    # An email task marked done was sent by hand (R4); a skipped one was never sent.
    moves = later_moves(versions.get(row.cadence_hash), row, later, now, sent=state == "done")
    stamp = int(now.timestamp())
    if not store.settle_task(task_id, StepState(state), stamp, moves):
        raise _not_open(store.step_run(task_id) or row)
    finish_enrolment(store, row.enrolment_id, stamp)
    done = store.step_run(task_id)
    assert done is not None
    return done


def finish_enrolment(store: Repository, enrolment_id: int, now: int) -> None:
    """An active enrolment whose steps are all settled becomes completed."""
    if completed(store.step_runs(enrolment_id)):
        store.end_enrolments(
            [Ending(enrolment_id, EnrolmentState.ACTIVE, EnrolmentState.COMPLETED)], now
        )


def send_task_email(
    store: Store,
    transport: Transport,
    task_id: int,
    *,
    subject: str,
    body: str,
    now: datetime,
    at: datetime | None = None,
) -> StepRow:
    """Send an email task with the rep's text now, or schedule it for `at` (R6)."""
    row = check_sendable(store, task_id)
    check_send_at(at, now)
    if at is not None and at > now:
        if not store.schedule_task_email(task_id, subject, body, int(at.timestamp())):
            raise _not_open(store.step_run(task_id) or row)
        scheduled = store.step_run(task_id)
        assert scheduled is not None
        return scheduled
    fence = store.take_task_email(task_id, subject, body, DEFAULT_LEASE)
    if fence is None:
        raise _not_open(store.step_run(task_id) or row)
    claimed = store.step_run(task_id)
    assert claimed is not None
    try:
        Runner(store, transport, clock=Clock(now)).send_claimed(fence, [claimed])
    except CadenceError as exc:
        after = store.step_run(task_id)
        if after is not None and after.state is StepState.PLANNED:
            # The rep's text is kept and the row is due: say so, or a retry of `tasks send`
            # would only find "not open".
            raise type(exc)(
                f"{exc.message}\n  task {task_id} is queued with your text: the next "
                "`cadence run` sends it",
                hint=exc.hint,
            ) from None
        raise
    done = store.step_run(task_id)
    assert done is not None
    if done.state is not StepState.SENT:
        raise _not_sent(done)
    return done


def _not_sent(row: StepRow) -> CadenceError:
    """What became of an email task the transport did not deliver: a failure (exit 1),
    never a usage error, with the server's answer."""
    answer = row.answer or "no answer"
    if row.state is StepState.PLANNED:  # a temporary failure: the runner retries it
        when = datetime.fromtimestamp(row.due_utc, UTC)
        return CadenceError(
            f"task {row.id} was not sent: the server deferred it ({answer}); the runner "
            f"retries it with your text at {when:%Y-%m-%d %H:%M} UTC",
            hint="nothing to do: the first `cadence run` from then on sends it "
            f"(`cadence enrolments show {row.email}` shows each attempt)",
        )
    if row.state is StepState.FAILED:
        return CadenceError(
            f"task {row.id} was not sent: the server refused it ({answer})",
            hint="it is not retried; a refused address is recorded as a bounce "
            f"(see `cadence enrolments show {row.email}`)",
        )
    if row.state is StepState.UNKNOWN:
        return CadenceError(
            f"task {row.id}: the connection broke while the message was handed over "
            f"({answer}); it may have been delivered",
            hint="`cadence status` lists it; `cadence resolve KEY --sent|--resend` settles it",
        )
    return CadenceError(f"task {row.id} was not sent: it is {row.state} ({answer})")


def check_send_at(at: datetime | None, now: datetime) -> None:
    """UsageError for a `tasks send --at` in the past."""
    if at is not None and at < now:
        raise UsageError(
            f"--at {at:%Y-%m-%d %H:%M} UTC is in the past",
            hint="give a later time, or leave --at out to send now",
        )


def check_sendable(store: Repository, task_id: int) -> StepRow:
    """The open email task `task_id`, or the error saying why it cannot be sent."""
    row = _task(store, task_id)
    if row.action != Action.EMAIL_TASK:
        raise UsageError(f"task {task_id} is {with_article(row.action)}, not an email task")
    if row.state is not StepState.OPEN:
        raise _not_open(row)
    return row


def queue_task_email(
    store: Repository, task_id: int, *, subject: str, body: str, at: datetime
) -> StepRow:
    """Hand an email task with the rep's text to the runner, due at `at` (R6).

    The Command Center's "send now" passes the present: the request records the send and
    never waits on SMTP; the runner's next pass delivers it with the usual guarantees.
    """
    row = check_sendable(store, task_id)
    if not store.schedule_task_email(task_id, subject, body, int(at.timestamp())):
        raise _not_open(store.step_run(task_id) or row)
    queued = store.step_run(task_id)
    assert queued is not None
    return queued
