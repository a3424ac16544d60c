"""The runner: claim → decide → build → `sending` → last check → `send_many` → record.

Guarantees (SPEC §7) and where they come from:
- no double send: rows are claimed under a lease with a fencing token; each message is
  rendered and built first, then `sending` is committed for at most `transport.in_doubt`
  rows before any byte goes to the transport; a row found in `sending` after its lease
  expired becomes `unknown` and is only ever resent by an operator;
- no lost send: a claimed row that never reached `sending` is claimed again once its
  lease expires (at once when the run gives it back: a stop, a transport that is down);
  a failure known to be before DATA is retried with backoff;
- signals win: the claim only takes rows of active enrolments, `begin_sending` checks
  again in its transaction, and the batch is checked once more right before the
  transport gets it.

Commits: a chunk's record (its outcomes, the bounces they signal, the enrolments they
complete) is one transaction, and so is it with the `sending` of the next chunk
(`Store.batch`), so a transport that takes one message per session (SMTP) costs one
fsynced commit per chunk, not two or three (the record, then ended enrolments, then the
next `sending`). After that commit the chunk before is settled and this one in doubt.

The decisions (send window, daily limit, R4/R5 moves, completion, bounces) are the pure
functions of `engine.policy` and `engine.lifecycle`; this module only sequences them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

from ..enrolments import resume_due
from ..errors import CadenceError
from ..faults import fault
from ..lifecycle import completed
from ..policy import DecisionKind, decide, over_limit, sent_moves
from ..signals import apply_signal
from ..store import (
    OUTCOME_STATE,
    Claim,
    Ending,
    EnrolmentState,
    Outcome,
    OutcomeKind,
    Signal,
    SignalKind,
    StepRow,
    StepState,
    Store,
)
from ..transports import (
    DeliveryUnknown,
    Envelope,
    PermanentFailure,
    Result,
    TemporaryFailure,
    Transport,
    TransportDown,
)
from ..unsubscribe import LinkForm
from .clock import Clock
from .pinned import Versions
from .render import render

DEFAULT_BATCH = 500
DEFAULT_LEASE = 300.0
MAX_ATTEMPTS = 8


class RunOptions(NamedTuple):
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

    def count(self, outcomes: Sequence[Outcome]) -> None:
        for o in outcomes:
            if o.kind is OutcomeKind.SENT:
                self.sent += 1
                self.rescheduled += len(o.followers)
            elif o.kind is OutcomeKind.RETRY:
                self.retried += 1
            elif o.kind is OutcomeKind.FAILED:
                self.failed += 1
            elif o.kind is OutcomeKind.BOUNCED:
                self.bounced += 1
            elif o.kind is OutcomeKind.UNKNOWN:
                self.unknown += 1
            elif o.kind is OutcomeKind.CANCELLED:
                self.cancelled += 1
            elif o.kind is OutcomeKind.OPENED:
                self.tasks_opened += 1
            elif o.kind is OutcomeKind.RESCHEDULED:
                self.rescheduled += 1
            if o.kind is not OutcomeKind.RELEASED:
                self.handled += 1


class _Built(NamedTuple):
    row: StepRow
    envelope: Envelope
    data: bytes
    unsubscribe_url: str  # kept with the outcome: the contact page shows it as sent


class _Steps(NamedTuple):
    """The claimed rows' enrolments' step runs, read once per claim."""

    of: dict[int, list[StepRow]]  # enrolment id → its step runs in file order
    by_id: dict[int, StepRow]

    @classmethod
    def read(cls, store: Store, enrolment_ids: Iterable[int]) -> _Steps:
        of = store.step_runs_of(enrolment_ids)
        return cls(of, {r.id: r for group in of.values() for r in group})


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
        self.links = LinkForm.from_env()  # the unsubscribe URL form, read once per run
        self.progress = progress
        self.stop_requested = False
        self._opened = False

    # -- the loop -------------------------------------------------------------------------

    def run_once(self) -> RunReport:
        """Execute every due step (looping over batches) and return what happened."""
        report = RunReport()
        resume_due(self.store, self.versions, self.clock.now())  # auto-reply pauses over
        try:
            while not self.stop_requested:
                claim = self.store.claim(
                    self.clock.seconds(), self.options.batch, self.options.lease
                )
                if not claim.rows:
                    break
                fault("after-claim")
                self._run_claim(claim, report)
        finally:
            self._close()
        return report

    def send_claimed(self, fence: int, rows: list[StepRow]) -> RunReport:
        """Send rows already claimed under `fence` (a rep's `tasks send`)."""
        report = RunReport()
        try:
            self._run_claim(Claim(fence, tuple(rows)), report)
        finally:
            self._close()
        return report

    def _tick(self, report: RunReport) -> None:
        if self.progress is not None:
            self.progress(report)

    def _close(self) -> None:
        if self._opened:
            self._opened = False
            self.transport.close()

    def _run_claim(self, claim: Claim, report: RunReport) -> None:
        at = self.clock.now()
        seconds = int(at.timestamp())
        settled: list[Outcome] = []
        to_send: list[StepRow] = []
        counted: dict[tuple[str, date], list[StepRow]] = {}
        for row in claim.rows:
            cadence = self.versions.get(row.cadence_hash)
            d = decide(cadence, row, at)
            if d.kind is DecisionKind.SEND:
                if d.day is None:
                    to_send.append(row)
                else:
                    counted.setdefault((row.cadence_hash, d.day), []).append(row)
            elif d.kind is DecisionKind.OPEN_TASK:
                settled.append(Outcome(row.id, OutcomeKind.OPENED, seconds))
            elif d.kind is DecisionKind.RESCHEDULE:
                settled.append(
                    Outcome(row.id, OutcomeKind.RESCHEDULED, seconds, d.reason, d.due_utc)
                )
            else:
                settled.append(Outcome(row.id, OutcomeKind.CANCELLED, seconds, d.reason))
        for (cadence_hash, day), rows in counted.items():
            # The daily limit is counted in the store, atomically: two runners never
            # overbook a sender's day. What does not fit goes to the next campaign day.
            cadence = self.versions.get(cadence_hash)
            limit = cadence.settings.daily_limit
            assert limit is not None
            granted = self.store.book_sends(cadence.sender.email, day.isoformat(), limit, len(rows))
            to_send += rows[:granted]
            settled += [
                Outcome(
                    r.id,
                    OutcomeKind.RESCHEDULED,
                    seconds,
                    "daily limit",
                    over_limit(cadence, r, day, None),
                )
                for r in rows[granted:]
            ]
        steps = _Steps.read(self.store, (r.enrolment_id for r in claim.rows))
        built: list[_Built] = []
        for row in to_send:
            enrolment = steps.of.get(row.enrolment_id, [])
            try:
                message = render(
                    self.versions.get(row.cadence_hash), row, at, enrolment, self.links
                )
            except CadenceError as exc:  # this contact's message cannot be built
                settled.append(Outcome(row.id, OutcomeKind.FAILED, seconds, exc.message))
                continue
            built.append(_Built(row, message.envelope, message.data, message.unsubscribe))
        # Outcomes not recorded yet: these, then each chunk's, are recorded in the same
        # transaction as the next chunk's `sending` (see `_hand_over`).
        pending = settled
        step = max(1, min(self.transport.in_doubt, self.options.batch))
        for start in range(0, len(built), step):
            if self.stop_requested:
                break
            pending = self._hand_over(
                claim.fence, built[start : start + step], pending, steps, report
            )
        if pending:
            self._record(claim.fence, pending, steps, report)
        # What was not handed over (asked to stop) is due again at once.
        self.store.release(claim.fence)

    def _hand_over(
        self,
        fence: int,
        chunk: list[_Built],
        before: list[Outcome],
        steps: _Steps,
        report: RunReport,
    ) -> list[Outcome]:
        """Commit `sending` for `chunk`, check it once more, hand it over; return its
        outcomes once the transport has made them durable (`flush`), for the caller to
        record. `before` (outcomes not recorded yet: the previous chunk's, or the rows
        of the claim settled without sending) is recorded in the same transaction as
        this chunk's `sending`: one commit per chunk instead of two."""
        try:
            if not self._opened:
                self.transport.open()
                self._opened = True
        except TemporaryFailure as exc:
            # Nothing of this chunk was handed over: the whole batch is known-not-sent.
            at = self.clock.seconds()
            retry = [self._retry(b.row, at, str(exc)) for b in chunk]
            self._record(fence, before + retry, steps, report)
            self.store.release(fence)
            raise CadenceError(
                f"transport unavailable: {exc}",
                hint="nothing was sent; these emails are due again after a backoff "
                "(1, 2, 4 … 60 minutes): check that the server is up and that --transport / "
                "CADENCE_TRANSPORT names it",
            ) from None
        except CadenceError:
            # Refused (a login, a folder): nothing of this chunk was handed over. Give the
            # batch back so the next run, once the setting is fixed, sends it at once.
            if before:
                self._record(fence, before, steps, report)
            self.store.release(fence)
            raise
        outcomes: list[Outcome] = []
        going: list[int] = []  # indexes into `chunk` that may be handed over

        def ready() -> list[int]:
            # Runs while the transport waits on its server (SMTP: the answer to MAIL
            # FROM), before any byte of the chunk is handed over.
            ids = [b.row.id for b in chunk]
            if before:
                # After this commit the previous chunk is recorded and this one is
                # `sending`; a crash before it leaves the previous chunk `sending` (in
                # doubt) and this one claimed: never more than one chunk in doubt.
                with self.store.batch():
                    self._record(fence, before, steps, report)
                    ours = self.store.begin_sending(fence, ids)
            else:
                ours = self.store.begin_sending(fence, ids)
            fault("after-sending-commit")
            stopped = self.store.stopped(ours)  # the last check before handing over
            at = self.clock.seconds()
            outcomes.extend(
                Outcome(i, kind, at, "stopped by a signal" if kind is OutcomeKind.CANCELLED else "")
                for i, kind in stopped.items()
            )
            allowed = [
                n for n, b in enumerate(chunk) if b.row.id in ours and b.row.id not in stopped
            ]
            if self.stop_requested:  # asked to stop before the hand-over: give it all back
                outcomes.extend(Outcome(chunk[n].row.id, OutcomeKind.RELEASED, at) for n in allowed)
                allowed = []
            going.extend(allowed)
            return allowed

        results = self.transport.send_many([(b.envelope, b.data) for b in chunk], ready)
        sent_at = self.clock.now()
        down: TransportDown | None = None
        for n in going:
            result = results[n]
            if isinstance(result, TransportDown):
                down = down or result
            outcomes.append(self._outcome(chunk[n], result, sent_at, steps))
        # Durable before any `sent` is recorded; a failure here records nothing (the
        # chunk stays `sending`, so it becomes `unknown`, never resent automatically).
        self.transport.flush()
        if down is not None:
            self._record(fence, outcomes, steps, report)
            self.store.release(fence)
            raise down.error
        return outcomes

    def _outcome(self, built: _Built, result: Result, sent_at: datetime, steps: _Steps) -> Outcome:
        row = built.row
        at = int(sent_at.timestamp())
        if isinstance(result, str):
            later = [
                s
                for s in steps.of.get(row.enrolment_id, ())
                if s.step_index > row.step_index and s.state is StepState.PLANNED
            ]
            moves = sent_moves(self.versions.get(row.cadence_hash), row, later, sent_at)
            return Outcome(
                row.id,
                OutcomeKind.SENT,
                at,
                result,
                followers=tuple(moves),
                unsubscribe_url=built.unsubscribe_url,
            )
        if isinstance(result, TransportDown):
            return Outcome(row.id, OutcomeKind.RELEASED, at)
        if isinstance(result, TemporaryFailure):
            return self._retry(row, at, str(result))
        if isinstance(result, PermanentFailure):
            kind = OutcomeKind.BOUNCED if result.recipient else OutcomeKind.FAILED
            return Outcome(row.id, kind, at, str(result))
        assert isinstance(result, DeliveryUnknown)
        return Outcome(
            row.id, OutcomeKind.UNKNOWN, at, str(result), unsubscribe_url=built.unsubscribe_url
        )

    def _retry(self, row: StepRow, at: int, answer: str) -> Outcome:
        attempts = row.attempts + 1
        if attempts >= self.options.max_attempts:
            return Outcome(row.id, OutcomeKind.FAILED, at, f"gave up after {attempts}: {answer}")
        backoff = min(60 * 2**row.attempts, 3600)
        return Outcome(row.id, OutcomeKind.RETRY, at, answer, retry_utc=at + backoff)

    def _record(
        self,
        fence: int,
        outcomes: list[Outcome],
        steps: _Steps,
        report: RunReport,
    ) -> None:
        """Record outcomes, then what follows from them: bounces, completed enrolments.
        All in one transaction: an enrolment is completed with its last send, never
        after it in a commit of its own."""
        states = {o.step_run_id: OUTCOME_STATE[o.kind] for o in outcomes}
        rows = steps.by_id
        touched = {rows[i].enrolment_id for i in states if i in rows}
        endings = [
            Ending(e, EnrolmentState.ACTIVE, EnrolmentState.COMPLETED)
            for e in touched
            if completed(steps.of[e], states)
        ]
        with self.store.batch():
            self.store.finish(fence, outcomes)
            for o in outcomes:
                if o.kind is OutcomeKind.BOUNCED and o.step_run_id in rows:
                    row = rows[o.step_run_id]
                    signal = Signal(
                        SignalKind.BOUNCE, row.email, None, o.at_utc, "runner", o.answer
                    )
                    apply_signal(self.store, self.versions, signal)
            if endings:
                self.store.end_enrolments(endings, max(o.at_utc for o in outcomes))
        report.count(outcomes)
        self._tick(report)
