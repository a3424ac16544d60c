"""The runner: claim → render → `sending` → last check → transport → record.

Guarantees (SPEC §7) and where they come from:
- no double send: rows are claimed under a lease with a fencing token; `sending` is
  committed before any byte goes to the transport; a row found in `sending` after its
  lease expired becomes `unknown` and is only ever resent by an operator;
- no lost send: a claimed row that never reached `sending` is claimed again once its
  lease expires; a failure known to be before DATA is retried with backoff;
- signals win: the claim only takes rows of active, unsuppressed enrolments,
  `begin_sending` checks again under the write lock, and each message is checked once
  more right before the transport gets it.

Work is batched (`batch` rows per claim, one fencing token per batch): three fsynced
transactions per batch instead of three per email. A crash makes the whole in-flight
batch `unknown`, never a second delivery.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import NamedTuple
from zoneinfo import ZoneInfo

from engine.calendar import (
    after_previous_step,
    campaign_days_between,
    next_campaign_day,
    resolve_local,
    shift_campaign_days,
    zone,
)
from engine.compiler import due_after_reference, same_time_reference
from engine.contacts import Contact
from engine.delivery import (
    Outgoing,
    build_message,
    thread_ids,
    unsubscribe_url,
)
from engine.errors import CadenceError, InternalError
from engine.faults import fault
from engine.messages import render_email
from engine.model import Cadence, Step
from engine.plan import Action
from engine.store import (
    Decision,
    DecisionKind,
    Move,
    Outcome,
    OutcomeKind,
    SentOn,
    SignalKind,
    StepRow,
    Store,
)
from engine.templates import configured_render_workers
from engine.transports import (
    DeliveryUnknown,
    PermanentFailure,
    Staged,
    Staging,
    TemporaryFailure,
    Transport,
)

DEFAULT_BATCH = 500
DEFAULT_LEASE = 300.0
MAX_ATTEMPTS = 8


class Clock:
    """The runner's idea of now: real time, or `--now` moving on with real time."""

    def __init__(self, start: datetime | None = None) -> None:
        self._offset = 0.0 if start is None else start.timestamp() - time.time()

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self._offset, UTC)

    def seconds(self) -> int:
        return int(time.time() + self._offset)


@dataclass(frozen=True, slots=True)
class RunOptions:
    batch: int = DEFAULT_BATCH
    lease: float = DEFAULT_LEASE  # seconds a claim may stay in flight
    max_attempts: int = MAX_ATTEMPTS


@dataclass(slots=True)
class RunReport:
    sent: int = 0
    tasks_opened: int = 0
    rescheduled: int = 0
    cancelled: int = 0
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    unknown: int = 0
    handled: int = 0  # due rows dealt with so far (progress only; not in as_dict)

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "tasks_opened": self.tasks_opened,
            "rescheduled": self.rescheduled,
            "cancelled": self.cancelled,
            "retried": self.retried,
            "failed": self.failed,
            "bounced": self.bounced,
            "unknown": self.unknown,
        }


def contact_of(row: StepRow | RenderJob) -> Contact:
    data = json.loads(row.contact)
    return Contact(
        email=data["email"], fields=data["fields"], timezone=data.get("timezone"), row=data["row"]
    )


def contact_json(contact: Contact) -> str:
    return json.dumps(
        {
            "email": contact.email,
            "fields": contact.fields,
            "timezone": contact.timezone,
            "row": contact.row,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


class Versions:
    """Pinned cadence versions by content hash, rebuilt from the store once each."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, Cadence] = {}

    def get(self, cadence_hash: str) -> Cadence:
        found = self._cache.get(cadence_hash)
        if found is None:
            data, source = self.store.version(cadence_hash)
            found = Cadence.from_data(json.loads(data), source=source)
            self._cache[cadence_hash] = found
        return found

    def end_state(self, kind: SignalKind, cadence_hash: str) -> tuple[str | None, bool]:
        """How a signal ends an enrolment of this version (on_reply, remove_on_bounce)."""
        settings = self.get(cadence_hash).settings
        if kind is SignalKind.REPLY:
            return ("replied" if settings.on_reply.end else None), settings.on_reply.mark_success
        if kind is SignalKind.BOUNCE:
            return ("bounced" if settings.remove_on_bounce else None), False
        return "unsubscribed", False


class RenderJob(NamedTuple):
    """What rendering one step run needs, as plain values: cheap to send to the worker."""

    cadence_hash: str
    step_id: str
    contact: str  # JSON
    uid: str
    unsubscribe_token: str
    zone: str
    message_id: str
    by_hand: bool
    subject: str | None
    body: str | None
    thread_sent_utc: int | None

    @classmethod
    def of(cls, row: StepRow) -> RenderJob:
        assert row.message_id is not None
        return cls(
            row.cadence_hash,
            row.step_id,
            row.contact,
            row.uid,
            row.unsubscribe_token,
            row.zone,
            row.message_id,
            row.by_hand,
            row.subject,
            row.body,
            row.thread_sent_utc,
        )


def render(versions: Versions, row: StepRow, at: datetime) -> Outgoing:
    """The message for one step run: the rep's edits if any, else the template (R3)."""
    return render_pinned(versions.get(row.cadence_hash), RenderJob.of(row), at)


def render_pinned(cadence: Cadence, row: RenderJob, at: datetime) -> Outgoing:
    """`render` for a cadence version already in hand: pure, no store access."""
    step = cadence.step(row.step_id)
    contact = contact_of(row)
    url = unsubscribe_url(cadence, row.unsubscribe_token)
    if row.by_hand and row.body is not None:
        subject, text = row.subject or "", row.body
    else:
        previous_at = (
            datetime.fromtimestamp(row.thread_sent_utc, UTC).astimezone(zone(row.zone))
            if row.thread_sent_utc is not None
            else None
        )
        email = render_email(
            cadence, step, contact, unsubscribe_url=url, previous_sent_at=previous_at
        )
        subject, text = email.subject, email.text
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
        references=thread_ids(cadence, step, row.uid),
        date=at,
        unsubscribe=url,
        unsubscribe_token=row.unsubscribe_token,
    )


PIPELINE_ROWS = 250  # a claim this full starts the render worker (CADENCE_PIPELINE_ROWS)

# A message (staged by the worker when the transport can stage), or why it could not be
# rendered (a CadenceError's text).
Rendered = Outgoing | Staged | str


def pipeline_rows() -> int:
    """Rows a claim must return for the run to start its render worker.

    The worker costs a fork (~10 ms) and only pays off when there is a lot to render;
    `CADENCE_PIPELINE_ROWS` lowers it (the kill-matrix tests run the pipeline on tiny
    batches), and `CADENCE_WORKERS=0` (as for `plan --render`) turns it off.
    """
    if configured_render_workers() == 0:
        return 0
    configured = os.environ.get("CADENCE_PIPELINE_ROWS", "")
    return max(int(configured), 1) if configured.isdigit() else PIPELINE_ROWS


_worker_versions: dict[str, Cadence] = {}
_worker_stage: Staging | None = None  # the runner's transport, when it stages


def _render_rows(
    new_versions: dict[str, tuple[str, str]], rows: list[RenderJob], at: datetime
) -> list[Rendered]:
    """In the render worker: a batch's messages from pinned data only (never the store)."""
    for cadence_hash, (data, source) in new_versions.items():
        _worker_versions[cadence_hash] = Cadence.from_data(json.loads(data), source=source)
    out: list[Rendered] = []
    for row in rows:
        try:
            message = render_pinned(_worker_versions[row.cadence_hash], row, at)
        except CadenceError as exc:
            out.append(str(exc))
            continue
        # Staging hands nothing over; a failure to stage fails the whole batch, which
        # the runner then releases (it never reached `sending`).
        if _worker_stage is not None:
            out.append(_worker_stage.stage(message.envelope, message.data))
        else:
            out.append(message)
    return out


def _worker_main(
    tasks: Connection, results: Connection, stage: Staging | None, runners: list[Connection]
) -> None:
    """The render worker's loop: a task in, its result out, in order, until told to stop.

    It ignores SIGINT and SIGTERM: Ctrl-C and `systemctl stop` reach the whole process
    group, and the runner decides what happens to the batches in flight (it gives back
    what it has not handed over, then closes this process). It ends when the runner sends
    None, or when the runner is gone (the task pipe ends).
    """
    import signal

    global _worker_stage
    for end in runners:  # the runner's ends, copied by the fork: only the runner's count
        end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _worker_stage = stage
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            result: tuple[bool, object] = (True, _render_rows(*task))
        except Exception as exc:
            result = (False, exc)
        try:
            try:
                results.send(result)
            except (pickle.PicklingError, TypeError, AttributeError):
                results.send((False, InternalError(f"render worker: {result[1]!r}")))
        except OSError:
            return  # the runner is gone


class WorkerStopped(CadenceError):
    """The render worker ended without answering (killed from outside)."""


class Rendering:
    """One submitted batch's result, as the render worker sends it back."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._ok = False
        self._value: object = None

    def _set(self, ok: bool, value: object) -> None:
        self._ok, self._value = ok, value
        self._event.set()

    def wait(self, timeout: float | None = None) -> None:
        self._event.wait(timeout)

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        return self._event.is_set() and self._ok

    def get(self) -> list[Rendered]:
        self._event.wait()
        if not self._ok:
            assert isinstance(self._value, BaseException)
            raise self._value
        return self._value  # type: ignore[return-value]


class RenderWorker:
    """A second process that renders batch k while the runner claims, sends and records
    the others. It gets each cadence version's stored text once and rows to render;
    it never opens the store, so every protocol step stays in the runner's process.

    With a transport that stages (the outbox), the worker also writes each message out
    of sight, and only a small handle comes back: the runner's process then just hands
    it over (renames the file) after `sending` is committed.

    One process, two pipes and, in the runner, a thread feeding tasks and one taking
    results (neither side ever waits on a full pipe while the other waits on it). Not a
    `multiprocessing.Pool`: a pool worker killed while it holds the task queue's lock (a
    SIGTERM to the whole group) leaves `Pool.terminate` waiting on that lock for ever.
    """

    def __init__(self, store: Store, transport: Transport) -> None:
        import multiprocessing
        import queue

        self.store = store
        self._sent: set[str] = set()
        staging = transport if isinstance(transport, Staging) else None
        context = multiprocessing.get_context("fork")
        tasks_in, self._tasks = context.Pipe(duplex=False)
        self._results, results_out = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_worker_main,
            args=(tasks_in, results_out, staging, [self._tasks, self._results]),
            daemon=True,
        )
        self._process.start()
        tasks_in.close()  # the worker's ends: the runner keeps only its own
        results_out.close()
        self._lock = threading.Lock()
        self._waiting: deque[Rendering] = deque()
        self._gone = False
        self._outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._feeder = threading.Thread(target=self._feed, name="cadence-feed", daemon=True)
        self._reader = threading.Thread(target=self._read, name="cadence-read", daemon=True)
        self._feeder.start()
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def submit(self, rows: list[StepRow], at: datetime) -> Rendering:
        new = {
            h: self.store.version(h)
            for h in dict.fromkeys(r.cadence_hash for r in rows)
            if h not in self._sent
        }
        self._sent.update(new)
        rendering = Rendering()
        with self._lock:
            if self._gone:
                rendering._set(False, self._stopped())
                return rendering
            self._waiting.append(rendering)
        self._outbox.put((new, [RenderJob.of(row) for row in rows], at))
        return rendering

    def _stopped(self) -> WorkerStopped:
        return WorkerStopped(
            f"the render worker (process {self._process.pid}) stopped without an answer",
            hint="the batches it had are given back and are due again at the next run",
        )

    def _feed(self) -> None:
        """Send the tasks in order; None (from `close`) goes last and tells the worker to end."""
        while True:
            task = self._outbox.get()
            try:
                self._tasks.send(task)
            except OSError:
                return  # the worker is gone: `_read` fails what waits
            if task is None:
                return

    def _read(self) -> None:
        while True:
            try:
                ok, value = self._results.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                rendering = self._waiting.popleft()
            rendering._set(ok, value)
        with self._lock:  # the worker ended: nothing more will come
            self._gone = True
            waiting, self._waiting = self._waiting, deque()
        for rendering in waiting:
            rendering._set(False, self._stopped())

    def close(self) -> None:
        self._outbox.put(None)
        self._feeder.join(timeout=5.0)
        self._process.join(timeout=5.0)
        if self._process.is_alive():  # still busy with a batch nobody waits for
            self._process.kill()
            self._process.join()
        self._reader.join(timeout=5.0)
        self._tasks.close()
        self._results.close()


class _Durable(threading.Thread):
    """Makes a handed-over batch durable on a thread of its own (a `syncfs` waits on the
    disk, not the interpreter) while the runner claims the next batch."""

    def __init__(self, sync: Callable[[], None]) -> None:
        super().__init__(name="cadence-durable", daemon=True)
        self._sync = sync
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._sync()
        except BaseException as exc:  # re-raised in the runner's thread by `result`
            self._error = exc

    def result(self) -> None:
        self.join()
        if self._error is not None:
            raise self._error


@dataclass(slots=True)
class _HandedOver:
    """A batch handed over to the transport, recorded once `durable` has finished."""

    fence: int
    outcomes: list[Outcome]
    durable: _Durable


@dataclass(slots=True)
class _InFlight:
    """A claimed batch whose messages the render worker is building."""

    fence: int
    rows: list[StepRow]
    at: datetime
    rendered: Rendering


def lateness_days(cadence: Cadence, row: StepRow, done: datetime) -> int:
    """R5: campaign days between a task's scheduled date and the day it was really completed.

    The scheduled date is `planned_utc`: the plan's time, moved by earlier R5 shifts but
    not by a rep's `tasks send --at` (so a late task counts once, however it is finished).
    """
    tz = zone(row.zone)
    due_day = datetime.fromtimestamp(row.planned_utc, UTC).astimezone(tz).date()
    return campaign_days_between(cadence.settings, due_day, done.astimezone(tz).date())


def _shifted(cadence: Cadence, instant: int, days: int, tz: ZoneInfo) -> datetime:
    """`instant` moved by `days` campaign days, its wall time kept."""
    local = datetime.fromtimestamp(instant, UTC).astimezone(tz)
    day = shift_campaign_days(cadence.settings, local.date(), days)
    return resolve_local(day, local.time().replace(tzinfo=None), tz)


def _shift(cadence: Cadence, other: StepRow, days: int, tz: ZoneInfo, reason: str) -> Move:
    """R5's shift of one later step: due and planned time, `days` campaign days on."""
    return Move(
        other.id,
        other.step_id,
        int(_shifted(cadence, other.due_utc, days, tz).timestamp()),
        int(_shifted(cadence, other.planned_utc, days, tz).timestamp()),
        reason,
    )


def later_moves(
    cadence: Cadence, row: StepRow, later: list[StepRow], done: datetime, *, sent: bool = True
) -> list[Move]:
    """How `later` steps move after `row` was completed (or sent by hand) at `done`.

    R5: shifted by the lateness in whole campaign days, gaps kept — both the due time and
    the planned time, so the next late task is measured against the shifted schedule.
    R4: when `row` is an email task that was `sent` (not skipped), a
    `same_time_as_previous` email whose reference is `row` takes the real send time's wall
    time on its own day (its due time only: the plan's time stays as it was).
    """
    shift = lateness_days(cadence, row, done)
    tz = zone(row.zone)
    moves: list[Move] = []
    for other in later:
        move = _shift(
            cadence, other, shift, tz, "after late task" if shift else "after email task sent"
        )
        due = datetime.fromtimestamp(move.due_utc, UTC)
        step = cadence.step(other.step_id)
        if sent and row.action == Action.EMAIL_TASK and _copies_time_of(cadence, step, row.step_id):
            due = due_after_reference(cadence, step, row.zone, due.astimezone(tz).date(), done)
        if int(due.timestamp()) != other.due_utc or move.planned_utc != other.planned_utc:
            moves.append(replace(move, due_utc=int(due.timestamp())))
    return moves


def catch_up_moves(
    cadence: Cadence, row: StepRow, later: list[StepRow], executed: datetime
) -> list[Move]:
    """No catch-up burst: the steps after `row` when it was executed late, at `executed`.

    `later` are the contact's planned steps after `row` with their current times. When
    the first one on a later campaign day would be due at or before `executed`, it goes
    to the next campaign day after that instant's local date at its own wall time (the
    compiler's rule, `after_previous_step`), and every step on a later day than `row`
    moves by the same number of campaign days (R5's shift), so their gaps are kept.
    Steps on `row`'s own day keep going right after it (file order).
    """
    tz = zone(row.zone)
    following = [r for r in later if r.day > row.day]
    if not following:
        return []
    first = following[0]
    due = datetime.fromtimestamp(first.due_utc, UTC)
    pushed = after_previous_step(cadence.settings, due, executed, tz)
    if pushed == due:
        return []
    days = campaign_days_between(
        cadence.settings, due.astimezone(tz).date(), pushed.astimezone(tz).date()
    )
    return [_shift(cadence, other, days, tz, "after previous step") for other in following]


def _copies_time_of(cadence: Cadence, step: Step, reference_id: str) -> bool:
    if step.email is None or step.email.send.kind.value != "same_time_as_previous":
        return False
    ref = same_time_reference(cadence, step)
    return ref is not None and ref.id == reference_id


class Runner:
    def __init__(
        self,
        store: Store,
        transport: Transport,
        *,
        clock: Clock | None = None,
        options: RunOptions | None = None,
        progress: Callable[[RunReport], None] | None = None,
    ) -> None:
        self.store = store
        self.transport = transport
        self.clock = clock or Clock()
        self.options = options or RunOptions()
        self.versions = Versions(store)
        self.progress = progress
        self.stop_requested = False
        self._opened = False
        self._start_claim()
        # Checked once: a runtime Protocol check costs more than sending a staged email.
        self._staging = transport if isinstance(transport, Staging) else None

    # -- deciding what a due row becomes --------------------------------------------------

    def decide(self, row: StepRow, sent_on: SentOn) -> Decision:
        if row.suppressed and row.action in (Action.SEND_EMAIL, Action.EMAIL_TASK):
            # Bounced or unsubscribed (remove_on_bounce: false keeps the enrolment): no
            # email of any kind goes to the address; calls and other tasks go on.
            return Decision(DecisionKind.CANCEL, reason="address suppressed")
        if row.action != Action.SEND_EMAIL and not row.by_hand:
            return Decision(DecisionKind.OPEN_TASK)
        if row.by_hand:  # a rep chose this time: no window, no limit
            return Decision(DecisionKind.CLAIM)
        cadence = self.versions.get(row.cadence_hash)
        settings = cadence.settings
        limit = settings.daily_limit
        # Without a daily limit the answer depends on the version and the zone only.
        key = (row.cadence_hash, row.zone)
        if limit is None and (same := self._decided.get(key)) is not None:
            return same
        tz = zone(row.zone)
        local = self._decide_at.astimezone(tz)
        wall = local.time().replace(tzinfo=None)
        window = settings.send_window
        if window is not None and not window.contains(wall):
            # Executed late (or the runner was down): the next opening, never outside it.
            if wall < window.start:
                day = shift_campaign_days(settings, local.date(), 0)
            else:
                day = next_campaign_day(settings, local.date())
            when = resolve_local(day, window.start, tz)
            decision = Decision(DecisionKind.RESCHEDULE, int(when.timestamp()), "send window")
            if limit is None:
                self._decided[key] = decision
            return decision
        if limit is None:
            self._decided[key] = decision = Decision(DecisionKind.CLAIM)
            return decision
        sender = cadence.sender.email
        day = local.date()
        if sent_on(sender, day.isoformat()) >= limit:
            # Like the compiler: the next campaign day, at the email's own wall time.
            nxt = next_campaign_day(settings, day)
            due_wall = datetime.fromtimestamp(row.due_utc, UTC).astimezone(tz).time()
            if window is not None and not window.contains(due_wall):
                due_wall = window.start
            when = resolve_local(nxt, due_wall, tz)
            return Decision(DecisionKind.RESCHEDULE, int(when.timestamp()), "daily limit")
        return Decision(DecisionKind.CLAIM, day_key=(sender, day.isoformat()))

    def _start_claim(self) -> None:
        """One instant for every decision of a claim (it is one transaction)."""
        self._decide_at = self.clock.now()
        self._decided: dict[tuple[str, str], Decision] = {}

    # -- the loop -------------------------------------------------------------------------

    def run_once(self) -> RunReport:
        """Execute every due step (looping over batches) and return what happened.

        Large runs become a pipeline: batch k is rendered (and, by a transport that
        stages, written) by a worker process while this process claims batch k+1 and
        hands over batch k-1; batch k-1 is made durable on a thread while batch k+1 is
        claimed, and recorded before batch k is handed over. Each batch still goes claim
        → `sending` commit → last check → transport → durable → record, in that order.
        """
        report = RunReport()
        threshold = pipeline_rows()
        worker: RenderWorker | None = None
        in_flight: _InFlight | None = None
        handed: _HandedOver | None = None
        done: _InFlight | None
        try:
            while not self.stop_requested:
                self._start_claim()
                lease_now = time.time()
                claim = self.store.claim(
                    self.clock.seconds(),
                    self.options.batch,
                    lease_now,
                    lease_now + self.options.lease,
                    self.decide,
                )
                if claim.examined == 0:
                    # Recording what went out may make later steps reachable: claim again.
                    if handed is not None:
                        self._complete(handed, report)
                        handed = None
                        continue
                    if in_flight is None:
                        break
                    done, in_flight = in_flight, None
                    self._send_rendered(done, report)
                    continue
                report.handled += claim.examined - len(claim.rows)
                report.tasks_opened += claim.opened
                report.rescheduled += claim.rescheduled
                report.cancelled += claim.cancelled
                self._tick(report)
                if not claim.rows:
                    continue
                fault("after-claim")
                rows = list(claim.rows)
                if worker is None and threshold and len(rows) >= threshold:
                    worker = RenderWorker(self.store, self.transport)
                if worker is None:
                    self._send_batch(claim.fence, rows, report)
                    continue
                at = self.clock.now()
                done = in_flight
                in_flight = _InFlight(claim.fence, rows, at, worker.submit(rows, at))
                if done is not None:
                    if handed is not None:  # durable while this batch was claimed
                        self._complete(handed, report)
                        handed = None
                    handed = self._send_rendered(done, report, defer=True)
            if handed is not None:
                done_handed, handed = handed, None
                self._complete(done_handed, report)
            if in_flight is not None:  # asked to stop: release it (never sent)
                done, in_flight = in_flight, None
                self._send_rendered(done, report)
        finally:
            if handed is not None:
                # Handed over before an error: record it if it is durable. If not, the
                # error that stopped the run is the one to report; the batch stays
                # `sending` and becomes `unknown`, never resent automatically.
                with contextlib.suppress(Exception):
                    self._complete(handed, report)
            if in_flight is not None:
                # An error left a claimed batch unsent: release it so the next run takes
                # it at once (a crash instead leaves it to the lease, then claims it again).
                self._release(in_flight, wait=2.0)
            if worker is not None:
                worker.close()
            if self._opened:
                self.transport.close()
                self._opened = False
        return report

    def _send_rendered(
        self, batch: _InFlight, report: RunReport, *, defer: bool = False
    ) -> _HandedOver | None:
        # Asked to stop: a batch still being rendered is given back, not waited for (a
        # SIGTERM to the whole group may have ended the worker, and its answer with it).
        while not batch.rendered.ready():
            if self.stop_requested:
                self._release(batch, wait=0.0)
                return None
            batch.rendered.wait(0.1)
        try:
            rendered = batch.rendered.get()
        except BaseException:
            self._release(batch, wait=0.0)  # the worker failed it: nothing was handed over
            raise
        messages = {row.id: m for row, m in zip(batch.rows, rendered, strict=True)}
        return self._send_batch(
            batch.fence, batch.rows, report, rendered_at=batch.at, rendered=messages, defer=defer
        )

    def _complete(self, handed: _HandedOver, report: RunReport) -> None:
        """Record a handed-over batch once it is durable; a failure records nothing."""
        handed.durable.result()
        self._record(handed.fence, handed.outcomes, report)

    def _release(self, batch: _InFlight, *, wait: float) -> None:
        """Give back a claimed batch that never reached `sending`, and drop what the
        worker staged for it (waiting up to `wait` seconds for the worker to finish; what
        it stages later is swept by the next run, once the worker is gone)."""
        seconds = self.clock.seconds()
        released = [Outcome(r.id, OutcomeKind.RELEASED, seconds) for r in batch.rows]
        self.store.finish(batch.fence, released, self.versions.end_state)
        batch.rendered.wait(wait)
        if batch.rendered.ready() and batch.rendered.successful():
            for message in batch.rendered.get():
                self._discard(message)

    def _discard(self, message: Rendered | None) -> None:
        if isinstance(message, Staged) and self._staging is not None:
            self._staging.discard(message)

    def send_claimed(self, fence: int, rows: list[StepRow]) -> RunReport:
        """Send rows already claimed under `fence` (a rep's `tasks send`)."""
        report = RunReport()
        try:
            self._send_batch(fence, rows, report)
        finally:
            if self._opened:
                self.transport.close()
                self._opened = False
        return report

    def _tick(self, report: RunReport) -> None:
        if self.progress is not None:
            self.progress(report)

    def _open(self) -> None:
        if not self._opened:
            self.transport.open()
            self._opened = True

    def _send_batch(
        self,
        fence: int,
        rows: list[StepRow],
        report: RunReport,
        *,
        rendered_at: datetime | None = None,
        rendered: dict[int, Rendered] | None = None,
        defer: bool = False,
    ) -> _HandedOver | None:
        """Hand a claimed batch over and record it; with `defer` (and a transport that
        stages), return it to be made durable and recorded by `_complete` instead."""
        now = rendered_at or self.clock.now()
        try:
            self._open()
        except TemporaryFailure as exc:
            # Nothing was handed over: the whole batch is known-not-sent.
            at = int(now.timestamp())
            self._record(fence, [self._retry(row, at, str(exc)) for row in rows], report)
            raise CadenceError(
                f"transport unavailable: {exc}",
                hint=f"nothing was sent; these {len(rows)} emails are due again after a backoff "
                "(1, 2, 4 … 60 minutes): check that the server is up and that --transport / "
                "CADENCE_TRANSPORT names it",
            ) from None
        except CadenceError:
            # Refused (e.g. SMTP login): nothing was handed over. Release the batch so the
            # next run, once the setting is fixed, sends it without waiting for the lease.
            at = self.clock.seconds()
            self._record(fence, [Outcome(row.id, OutcomeKind.RELEASED, at) for row in rows], report)
            raise
        ours = self.store.begin_sending(fence, [row.id for row in rows])
        fault("after-sending-commit")
        outcomes: list[Outcome] = []
        # Rendered here just before it is handed over, or already by the render worker.
        for row in rows:
            if row.id not in ours:  # cancelled by a signal, or no longer ours (lease lost)
                self._discard(rendered.get(row.id) if rendered is not None else None)
                continue
            if self.stop_requested:
                outcomes.append(Outcome(row.id, OutcomeKind.RELEASED, self.clock.seconds()))
                self._discard(rendered.get(row.id) if rendered is not None else None)
                continue
            try:
                message = (
                    rendered[row.id] if rendered is not None else render(self.versions, row, now)
                )
            except CadenceError as exc:
                message = str(exc)
            if isinstance(message, str):
                outcomes.append(Outcome(row.id, OutcomeKind.FAILED, self.clock.seconds(), message))
                continue
            if self.store.stopped([row.id]):  # the last check before handing it over
                outcomes.append(
                    Outcome(
                        row.id, OutcomeKind.CANCELLED, self.clock.seconds(), "stopped by a signal"
                    )
                )
                self._discard(message)
                continue
            outcomes.append(self._deliver(row, message))
            report.handled += 1
            self._tick(report)
        # Durable before any `sent` is recorded; a failure here records nothing (the
        # batch stays `sending`, so it becomes `unknown`, never resent automatically).
        if defer and self._staging is not None:
            return _HandedOver(fence, outcomes, _Durable(self._staging.take_durable()))
        self.transport.flush()
        self._record(fence, outcomes, report)
        return None

    def _deliver(self, row: StepRow, message: Outgoing | Staged) -> Outcome:
        try:
            if isinstance(message, Staged):
                assert self._staging is not None
                answer = self._staging.send_staged(message)
            else:
                answer = self.transport.send(message.envelope, message.data)
        except TemporaryFailure as exc:
            return self._retry(row, self.clock.seconds(), str(exc))
        except PermanentFailure as exc:
            kind = OutcomeKind.BOUNCED if exc.recipient else OutcomeKind.FAILED
            return Outcome(row.id, kind, self.clock.seconds(), str(exc))
        except DeliveryUnknown as exc:
            return Outcome(row.id, OutcomeKind.UNKNOWN, self.clock.seconds(), str(exc))
        sent = self.clock.now()
        return Outcome(
            row.id,
            OutcomeKind.SENT,
            int(sent.timestamp()),
            answer,
            followers=self._followers(row, sent),
        )

    def _followers(self, row: StepRow, sent: datetime) -> tuple[Move, ...]:
        """Later steps' new times now that `row` went out at `sent`.

        R4/R5 for emails sent by hand or moved by the runner, then the no-burst rule
        (`catch_up_moves`) for every email that has a step on a later day after it.
        """
        cadence = self.versions.get(row.cadence_hash)
        moved = row.by_hand or row.due_utc != row.planned_utc
        if not moved and cadence.steps[-1].day <= row.day:
            return ()  # nothing can move: the common case reads nothing more
        later = [
            r
            for r in self.store.step_runs(row.enrolment_id)
            if r.step_index > row.step_index and r.state == "planned"
        ]
        moves: list[Move] = []
        if row.by_hand:
            moves = later_moves(cadence, row, later, sent)
        elif moved:
            tz = zone(row.zone)
            for other in later:
                step = cadence.step(other.step_id)
                if _copies_time_of(cadence, step, row.step_id):
                    day = datetime.fromtimestamp(other.due_utc, UTC).astimezone(tz).date()
                    due = due_after_reference(cadence, step, row.zone, day, sent)
                    moves.append(
                        Move(
                            other.id,
                            other.step_id,
                            int(due.timestamp()),
                            other.planned_utc,
                            "after email sent",
                        )
                    )
        by_id = {m.step_run_id: m for m in moves}
        current = [
            replace(r, due_utc=m.due_utc, planned_utc=m.planned_utc)
            if (m := by_id.get(r.id)) is not None
            else r
            for r in later
        ]
        for move in catch_up_moves(cadence, row, current, sent):
            by_id[move.step_run_id] = move
        return tuple(by_id.values())

    def _retry(self, row: StepRow, at: int, answer: str) -> Outcome:
        attempts = row.attempts + 1
        if attempts >= self.options.max_attempts:
            return Outcome(row.id, OutcomeKind.FAILED, at, f"gave up after {attempts}: {answer}")
        backoff = min(60 * 2**row.attempts, 3600)
        return Outcome(row.id, OutcomeKind.RETRY, at, answer, retry_utc=at + backoff)

    def _record(self, fence: int, outcomes: list[Outcome], report: RunReport) -> None:
        self.store.finish(fence, outcomes, self.versions.end_state)
        for o in outcomes:
            if o.kind is OutcomeKind.SENT:
                report.sent += 1
                report.rescheduled += len(o.followers)
            elif o.kind is OutcomeKind.RETRY:
                report.retried += 1
            elif o.kind is OutcomeKind.FAILED:
                report.failed += 1
            elif o.kind is OutcomeKind.BOUNCED:
                report.bounced += 1
            elif o.kind is OutcomeKind.UNKNOWN:
                report.unknown += 1
            elif o.kind is OutcomeKind.CANCELLED:
                report.cancelled += 1


def run_every(
    runner: Runner,
    expression: str,
    on_report: Callable[[datetime, RunReport], None],  # the run's start, its report
    on_error: Callable[[CadenceError], None],
    before_pass: Callable[[], None] | None = None,
) -> None:
    """Run at every fire time of a 5-field cron expression until SIGINT/SIGTERM.

    A signal only sets a flag: the message in hand is finished and recorded, the rest of
    its batch is released (due again), then the loop ends. `before_pass` runs first at
    each fire time (the inbox poll, so a reply that came before a step's time stops it);
    when it fails, that pass is skipped: sending without having heard could email someone
    who already answered.
    """
    from croniter import croniter

    with stopping_on_signals(runner):
        schedule = croniter(expression, runner.clock.now())
        while not runner.stop_requested:
            fire: datetime = schedule.get_next(datetime)
            while not runner.stop_requested:
                left = fire.timestamp() - runner.clock.now().timestamp()
                if left <= 0:
                    break
                time.sleep(min(left, 0.2))
            if runner.stop_requested:
                break
            started = runner.clock.now()
            try:
                if before_pass is not None:
                    before_pass()
                report = runner.run_once()
            except CadenceError as exc:  # e.g. SMTP down: try again at the next fire time
                on_error(exc)
                continue
            on_report(started, report)


@contextmanager
def stopping_on_signals(runner: Runner) -> Iterator[None]:
    """SIGINT and SIGTERM only ask `runner` to stop: the message in hand is finished and
    recorded, the rest of its batch is released (due again at the next run), and the run
    returns normally — for `run --once` as for `run --every`. Nothing is left `sending`."""
    import signal

    def stop(signum: int, frame: object) -> None:
        runner.stop_requested = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def check_cron(expression: str) -> None:
    """Raise UsageError unless `expression` is a valid 5-field cron expression."""
    from croniter import croniter

    from engine.errors import UsageError

    hint = "e.g. '*/5 * * * *' (every 5 minutes) or '0 9-17 * * 1-5'"
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise UsageError(f"--every {expression!r} is not a 5-field cron expression", hint=hint)
    try:  # valid fields can still name a date that never comes (30 February)
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except Exception:
        raise UsageError(f"--every {expression!r} never fires (no such date)", hint=hint) from None
