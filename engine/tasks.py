"""The task queue (R5, R6): list, show with compose links, done, skip, and send email tasks.

Tasks are step runs the runner opened when they came due. While one is open, the
contact's later steps are held; completing it late shifts them by the lateness in whole
campaign days (`engine.runner.later_moves`), so gaps are kept and nothing bursts out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from engine.calendar import zone
from engine.delivery import unsubscribe_url
from engine.errors import CadenceError, UsageError
from engine.messages import compose_links, render_email, render_task_text
from engine.plan import Action
from engine.runner import DEFAULT_LEASE, Clock, Runner, Versions, contact_of, later_moves
from engine.store import Move, StepRow, Store, TaskFilter
from engine.transports import Transport


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
    if compose and row.action == Action.EMAIL_TASK:
        email = render_email(cadence, step, contact, unsubscribe_url=url)
        subject, body = email.subject, email.text
        links = compose_links(contact.email, subject, body)
    return TaskView(
        id=row.id,
        cadence=row.cadence_name,
        action=row.action,
        contact=contact.email,
        step_id=row.step_id,
        due=datetime.fromtimestamp(row.due_utc, UTC),
        zone=row.zone,
        title=text.title,
        notes=text.notes,
        state=row.state,
        subject=subject,
        body=body,
        links=links,
    )


def list_tasks(store: Store, where: TaskFilter) -> list[TaskView]:
    versions = Versions(store)
    return [view(versions, row) for row in store.tasks(where)]


def show_task(store: Store, task_id: int) -> TaskView:
    row = store.step_run(task_id)
    if row is None or row.action == Action.SEND_EMAIL:
        raise UsageError(f"no task {task_id}", hint="see `cadence tasks list`")
    return view(Versions(store), row, compose=True)


def complete_task(store: Store, task_id: int, state: str, now: datetime) -> StepRow:
    """Mark a task done or skipped; later steps shift by its lateness (R5) and, for an
    email task sent by hand, `same_time_as_previous` takes its real send time (R4)."""
    versions = Versions(store)

    def shift(row: StepRow, later: list[StepRow]) -> list[Move]:
        # An email task marked done was sent by hand (R4); a skipped one was never sent.
        return later_moves(versions.get(row.cadence_hash), row, later, now, sent=state == "done")

    return store.complete_task(task_id, state, int(now.timestamp()), shift)


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
    row = store.step_run(task_id)
    if row is None or (row.action == Action.SEND_EMAIL and not row.by_hand):
        raise UsageError(f"no task {task_id}", hint="see `cadence tasks list`")
    if row.action != Action.EMAIL_TASK:
        raise UsageError(f"task {task_id} is a {row.action}, not an email task")
    if row.state != "open":
        raise UsageError(f"task {task_id} is not open (it is {row.state})")
    if at is not None and at > now:
        return store.schedule_task_email(task_id, subject, body, int(at.timestamp()))
    fence, claimed = store.take_task_email(task_id, subject, body, time.time() + DEFAULT_LEASE)
    try:
        Runner(store, transport, clock=Clock(now)).send_claimed(fence, [claimed])
    except CadenceError as exc:
        after = store.step_run(task_id)
        if after is not None and after.state == "planned":
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
    if done.state != "sent":
        raise UsageError(f"task {task_id} was not sent: {done.state} ({done.answer})")
    return done


def queue_task_email(
    store: Store, task_id: int, *, subject: str, body: str, at: datetime
) -> StepRow:
    """Hand an email task with the rep's text to the runner, due at `at` (R6).

    The Command Center's "send now" passes the present: the request records the send and
    never waits on SMTP; the runner's next pass delivers it with the usual guarantees.
    """
    return store.schedule_task_email(task_id, subject, body, int(at.timestamp()))
