"""Every call the Command Center makes into the engine, in one place.

The web layer decides nothing about cadences: what a task shows, what completing one
shifts (R5), how a rep's email is sent (R6), what `status` counts and what an unsubscribe
ends are the same engine functions the CLI calls. What is here is who may see what
(a rep: the cadences whose `sender.email` is theirs; an admin: all) and shaping the
engine's answers for the pages.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from ..contacts import Contact
from ..delivery import clean, unsubscribe_url
from ..errors import NotFound
from ..plan import Action
from ..run.pinned import Versions, contact_of
from ..run.render import message_text
from ..status import StatusReport, status
from ..store import (
    EnrolmentRecord,
    EventRecord,
    StepRow,
    Store,
    TaskFilter,
    open_store,
)
from ..store.users import Session, User, UserStore
from ..tasks import (
    TaskView,
    check_sendable,
    complete_task,
    list_tasks,
    queue_task_email,
    show_task,
    view,
)
from ..unsubscribe import address_of_token, unsubscribe_by_token
from ..users import session_of, sign_in, sign_out, users_on

# What the live feed shows (SPEC §9): sends, signals, pauses and worked tasks.
FEED_KINDS = (
    "sent",
    "reply",
    "bounce",
    "unsubscribe",
    "auto-reply",
    "paused",
    "task done",
    "task skipped",
)


class Backend:
    """One thread's connections to the state store (a SQLite connection is not shared
    between threads; waitress serves each request on one of its threads)."""

    def __init__(self, path: str) -> None:
        self.store: Store = open_store(path)
        self.users: UserStore = users_on(self.store)  # the same connection
        # Pinned versions by content hash: what a hash names never changes, so the
        # thread keeps them from one request to the next.
        self.versions = Versions(self.store)

    def close(self) -> None:
        self.store.close()


class Backends:
    """A Backend per serving thread, all closed together when the server stops."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[Backend] = []
        self._lock = threading.Lock()
        Backend(path).close()  # fail at start, not at the first request, on a bad store

    def get(self) -> Backend:
        found: Backend | None = getattr(self._local, "backend", None)
        if found is None:
            found = self._local.backend = Backend(self.path)
            with self._lock:
                self._all.append(found)
        return found

    def close(self) -> None:
        with self._lock:
            for backend in self._all:
                backend.close()
            self._all.clear()
        self._local = threading.local()


def _sender_filter(user: User) -> str | None:
    return None if user.admin else user.email


def _may_see(versions: Versions, user: User, cadence_hash: str) -> bool:
    return user.admin or versions.get(cadence_hash).sender.email.lower() == user.email


# -- sign-in ---------------------------------------------------------------------------


def start_session(b: Backend, token: str, now: datetime) -> tuple[str, Session] | None:
    return sign_in(b.users, token, now)


def current_session(b: Backend, session_id: str, now: datetime) -> Session | None:
    return session_of(b.users, session_id, now)


def end_session(b: Backend, session_id: str) -> None:
    sign_out(b.users, session_id)


# -- the task queue and task pages -----------------------------------------------------


def healthy(b: Backend) -> None:
    """One read of the store (a CadenceError when it cannot be read)."""
    b.store.events(limit=1, newest_first=True)


def queue(b: Backend, user: User, *, cadence: str | None, action: Action | None) -> list[TaskView]:
    return list_tasks(
        b.store, TaskFilter(cadence=cadence, action=action, sender=_sender_filter(user))
    )


def coming(
    b: Backend, user: User, *, cadence: str | None, action: Action | None, until: datetime
) -> list[TaskView]:
    """Tasks the runner has not opened yet, due by `until` (the queue's "upcoming"); a
    task behind an open one shows its planned time, which completing that one may shift."""
    where = TaskFilter(cadence=cadence, action=action, sender=_sender_filter(user))
    rows = b.store.upcoming_tasks(int(until.timestamp()), where)
    versions = b.versions
    return [view(versions, r) for r in rows]


def cadence_names(b: Backend, user: User) -> list[str]:
    """Names of the launched cadences the user may see (the queue's filter)."""
    versions = b.versions
    return sorted(
        {name for h, (name, _) in b.store.versions().items() if _may_see(versions, user, h)}
    )


@dataclass(frozen=True, slots=True)
class TaskPage:
    task: TaskView
    contact: Contact
    sender_name: str
    sender_email: str


def _visible_row(b: Backend, user: User, task_id: int) -> tuple[StepRow, Versions]:
    """The step run `task_id` and the versions read for it; NotFound for one that does
    not exist or belongs to another rep's cadence (never "it exists, not yours")."""
    row = b.store.step_run(task_id)
    versions = b.versions
    if row is None or not _may_see(versions, user, row.cadence_hash):
        raise NotFound(f"no task {task_id}")
    return row, versions


def task_page(b: Backend, user: User, task_id: int) -> TaskPage:
    """The task as `cadence tasks show` gives it, with its contact; NotFound for a task
    that does not exist or belongs to another rep's cadence. Any other CadenceError (a
    template that does not render for this contact) is the page's to show as it is."""
    row, versions = _visible_row(b, user, task_id)
    try:
        view = show_task(b.store, task_id)
    except NotFound:  # a step run that is not a task (an automatic email)
        raise NotFound(f"no task {task_id}") from None
    sender = versions.get(row.cadence_hash).sender
    return TaskPage(view, contact_of(row), sender.name, sender.email)


def finish_task(b: Backend, user: User, task_id: int, state: str, now: datetime) -> StepRow:
    _visible_row(b, user, task_id)
    return complete_task(b.store, task_id, state, now)


def check_sendable_task(b: Backend, user: User, task_id: int) -> None:
    """Nothing when `task_id` is an open email task `user` may send; else the error saying
    why (NotFound for a task that is not theirs to see)."""
    _visible_row(b, user, task_id)
    check_sendable(b.store, task_id)


def send_task(
    b: Backend, user: User, task_id: int, *, subject: str, body: str, at: datetime
) -> StepRow:
    """Record the rep's email for the runner to deliver at `at` (now: its next pass)."""
    _visible_row(b, user, task_id)
    return queue_task_email(b.store, task_id, subject=subject, body=body, at=at)


# -- contacts, the live feed, the overview ---------------------------------------------


@dataclass(frozen=True, slots=True)
class ThreadEmail:
    step_id: str
    sent: datetime
    subject: str
    body: str
    by_hand: bool


@dataclass(frozen=True, slots=True)
class EventView:
    """An event as the pages show it: with the cadence and step it is about, if any."""

    at_utc: int
    kind: str
    email: str
    detail: str
    cadence_name: str = ""
    step_id: str = ""


@dataclass(frozen=True, slots=True)
class EnrolmentView:
    enrolment: EnrolmentRecord
    steps: list[StepRow]
    thread: list[ThreadEmail]


@dataclass(frozen=True, slots=True)
class ContactPage:
    email: str
    contact: Contact | None
    enrolments: list[EnrolmentView]
    events: list[EventView]


def _thread(versions: Versions, rows: list[StepRow]) -> list[ThreadEmail]:
    out: list[ThreadEmail] = []
    for row in rows:
        if row.sent_utc is None or row.action not in (Action.SEND_EMAIL, Action.EMAIL_TASK):
            continue
        # What went out: the runner's own words for it (a rep's text, or the template
        # with the thread's quote dated as it was sent) and the unsubscribe link the
        # runner's environment gave it; this process's settings only for an email sent
        # before the store kept that link.
        cadence = versions.get(row.cadence_hash)
        url = row.unsubscribe_url or unsubscribe_url(cadence, row.unsubscribe_token)
        subject, body = message_text(cadence, row, contact_of(row), rows, url)
        sent = datetime.fromtimestamp(row.sent_utc, UTC)
        out.append(ThreadEmail(row.step_id, sent, clean(subject), body, row.by_hand))
    return out


def _event_views(b: Backend, events: list[EventRecord]) -> list[EventView]:
    """Name each event's cadence and step (one read for all the enrolments they are about)."""
    by_step: dict[int, StepRow] = {}
    cadence_of: dict[int, str] = {}
    enrolment_ids = {e.enrolment_id for e in events if e.enrolment_id is not None}
    for enrolment_id, steps in b.store.step_runs_of(enrolment_ids).items():
        by_step.update((s.id, s) for s in steps)
        cadence_of[enrolment_id] = steps[0].cadence_name
    out: list[EventView] = []
    for e in events:
        step = by_step.get(e.step_run_id) if e.step_run_id is not None else None
        if step is None and e.step_run_id is not None:
            step = b.store.step_run(e.step_run_id)  # an event naming only its step run
        name = step.cadence_name if step is not None else ""
        if not name and e.enrolment_id is not None:
            name = cadence_of.get(e.enrolment_id, "")
        step_id = step.step_id if step is not None else ""
        out.append(EventView(e.at_utc, e.kind, e.email, e.detail, name, step_id))
    return out


def contact_page(b: Backend, user: User, email: str) -> ContactPage:
    """A contact's enrolments in the user's cadences, each step, the thread, the events;
    NotFound when the user has none with this contact."""
    versions = b.versions
    every = b.store.enrolments(email=email)
    enrolments = [e for e in every if _may_see(versions, user, e.cadence_hash)]
    if not enrolments:
        raise NotFound(f"no contact {email}")
    steps_of = b.store.step_runs_of(e.id for e in enrolments)
    views: list[EnrolmentView] = []
    contact = None
    for e in enrolments:
        steps = steps_of.get(e.id, [])
        if steps:
            contact = contact_of(steps[0])
        views.append(EnrolmentView(e, steps, _thread(versions, steps)))
    # Signals (no enrolment) are the contact's; other events only of the user's enrolments.
    mine = {e.id for e in enrolments}
    step_enrolment = {s.id: e for e, steps in steps_of.items() for s in steps}
    events = [
        ev
        for ev in b.store.events(email=email)
        if _about(ev, step_enrolment) is None or _about(ev, step_enrolment) in mine
    ]
    return ContactPage(email.lower(), contact, views, _event_views(b, events))


def _about(event: EventRecord, step_enrolment: dict[int, int]) -> int | None:
    """The enrolment an event is about, when it names one (itself or through its step)."""
    if event.enrolment_id is not None:
        return event.enrolment_id
    if event.step_run_id is not None:
        return step_enrolment.get(event.step_run_id, -1)  # a step of someone else's
    return None


def feed(b: Backend, user: User, limit: int = 100) -> list[EventView]:
    return _event_views(b, b.store.latest_events(FEED_KINDS, limit, sender=_sender_filter(user)))


def overview(b: Backend, user: User, now: datetime) -> StatusReport:
    """`cadence status` (the engine's own report: per version, the paused enrolments and
    when they resume, the unknown sends), limited to the versions the user may see (by
    version: another rep's cadence of the same name stays out)."""
    report = status(b.store, now)
    if user.admin:
        return report
    versions = b.versions

    def mine(cadence_hash: str) -> bool:
        return _may_see(versions, user, cadence_hash)

    return StatusReport(
        versions=tuple(v for v in report.versions if mine(v.cadence_hash)),
        unknown=tuple(u for u in report.unknown if mine(u.cadence_hash)),
        paused=tuple(p for p in report.paused if mine(p.cadence_hash)),
    )


# -- the public unsubscribe endpoint ---------------------------------------------------


def unsubscribe_token_known(b: Backend, token: str) -> bool:
    """Whether POST /u/TOKEN would act: the same look-up (a lower-cased token too)."""
    return address_of_token(b.store, token) is not None


def unsubscribe(b: Backend, token: str, now: datetime) -> str:
    """Unsubscribe the contact of `token` (NotFound for an unknown one): its address."""
    return unsubscribe_by_token(b.store, token, source="web", now=now).email
