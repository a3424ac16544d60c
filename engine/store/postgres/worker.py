"""`cadence worker`: a procrastinate worker that runs the due step runs of a PostgreSQL store.

Any number of workers on any number of machines share one database. Each due step run is
one job (queueing-locked by its id, deferred by the store in the transaction that made
the row due); a job whose row is still `planned` runs one pass of the ordinary runner,
which claims that row and whatever else is due under a fenced lease — so a job that
procrastinate retries after its worker died finds its rows `sending` (never resent:
they become `unknown` when the lease ends) or `planned` again (sent by this pass).

Periodic work runs as procrastinate periodic tasks, deferred once per minute across all
workers (procrastinate keeps one job per task and minute): the sweep expires ended
leases into `unknown`, hands the jobs of dead workers back to the queue, and runs one
pass so nothing due waits for a job that was lost. With a mailbox (CADENCE_IMAP_URL) the
inbox task polls it once per minute the same way, one job per minute across all workers,
at a priority above every other job so its replies stop the sends of that minute; a
starting worker polls once before it takes any job.

"Now" is the database clock, not this machine's: every pass starts a runner `Clock` at
the database's time, and leases are measured by the database.

A lost connection does not end a worker. procrastinate stops its worker when the
connection of a side task (the job listener, the heartbeat, the periodic deferrer) breaks,
or fails when fetching a job does, and leaves the restart to a supervisor (its PR #1463
and issue #1116); `run_worker` is that supervisor, in the process: it logs one line,
tries the database again after 0.5 s, 1 s, 2 s … (at most RETRY_CAP apart), and when a
connection can be had it sweeps and starts procrastinate's worker again. Re-running is
safe: a pass the loss cut off left its rows `claimed` (due again when the lease ends)
or `sending` (`unknown`, never resent), and every claim and `sending` is fenced. When
no connection can be had for `reconnect_for` seconds it gives up with `ConnectionLost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import (
    QUEUE,
    STEP_TASK,
    ConnectionLost,
    PostgresStore,
    connection_reason,
    is_lost_connection,
    redact,
)

if TYPE_CHECKING:
    from procrastinate import App

    from ...inbound.imap import Mailbox
    from ...inbound.poll import PollReport
    from ...run.loop import Runner, RunReport

SWEEP_TASK = "cadence.sweep"
SWEEP_CRON = "* * * * *"
INBOX_TASK = "cadence.inbox"
INBOX_CRON = "* * * * *"
# Above the step jobs (priority 0): the poll of a minute runs before its sends.
INBOX_PRIORITY = 10
# A worker silent for this long (no heartbeat) is dead: its jobs go back to the queue.
STALLED_AFTER = 30.0
# How long a worker that lost its connection keeps trying to connect again before it
# exits 1 (`--reconnect-for`): a server restart or a failover takes seconds.
RECONNECT_FOR = 60.0
RETRY_FIRST = 0.5  # seconds before the first try; each wait doubles, up to RETRY_CAP
RETRY_CAP = 5.0
# An operation of the store or of procrastinate waits this long for a pooled connection
# (not psycopg_pool's 30 s or the store's 60 s): with pools as large as they are here, a
# longer wait only means the server is out of reach, and it would hold up the stop of
# procrastinate's worker after a lost connection, and so the outage's first line.
POOL_WAIT = 5.0

log = logging.getLogger("cadence.worker")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    transport: str  # a --transport URL (parse_transport)
    concurrency: int = 1
    batch: int = 100
    lease: float = 300.0
    until_idle: bool = False  # exit when no job is due (tests, benchmarks, cron-style use)
    name: str | None = None
    mailbox: Mailbox | None = None  # CADENCE_IMAP_URL: polled once per minute
    reconnect_for: float = RECONNECT_FOR


def database_clock(store: PostgresStore) -> Any:
    """A runner clock that starts at the database's time and moves on with real time."""
    from ...run.clock import Clock

    return Clock(datetime.fromtimestamp(store.clock(), UTC))


class Passes:
    """The runner passes in flight on this worker's threads: a stopping worker ends each
    after the chunk in hand (claimed rows not yet `sending` go back, as for `cadence run`
    on a signal), so a pass over a long queue does not hold the stop up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runners: set[Runner] = set()
        self.stopping = False

    def run(self, store: PostgresStore, transport_url: str, batch: int, lease: float) -> RunReport:
        """One pass of the ordinary runner over what is due, on the database clock."""
        from ...run.loop import Runner, RunOptions, RunReport
        from ...transports import parse_transport

        runner = Runner(
            store,
            parse_transport(transport_url),
            clock=database_clock(store),
            options=RunOptions(batch=batch, lease=lease),
        )
        with self._lock:
            if self.stopping:
                return RunReport()
            self._runners.add(runner)
        try:
            return runner.run_once()
        finally:
            with self._lock:
                self._runners.discard(runner)

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            for runner in self._runners:
                runner.stop_requested = True


def poll_inbox(store: PostgresStore, mailbox: Mailbox) -> PollReport | None:
    """One poll of the mailbox (the one `cadence inbox poll` runs), on the database clock;
    None when it failed, which is logged (the URL never holds a password) and tried again
    at the next minute."""
    from ...errors import CadenceError
    from ...inbound.poll import poll

    try:
        return poll(store, mailbox, now=datetime.fromtimestamp(store.clock(), UTC))
    except CadenceError as exc:
        log.error("inbox poll of %s failed (tried again next minute): %s", mailbox.url, exc)
        return None


def make_app(
    url: str,
    options: WorkerOptions,
    *,
    on_report: Callable[[RunReport], None] | None = None,
    on_poll: Callable[[PollReport], None] | None = None,
) -> tuple[App, PostgresStore, Passes]:
    """The procrastinate app of a worker, with its tasks, on `url`."""
    from procrastinate import App, PsycopgConnector

    passes = Passes()

    store = PostgresStore(url, max_connections=options.concurrency + 2, wait=POOL_WAIT)
    app = App(connector=PsycopgConnector(conninfo=url, min_size=1, max_size=4, timeout=POOL_WAIT))

    def report(result: RunReport) -> None:
        if on_report is not None and any(result.as_dict().values()):
            on_report(result)

    @app.task(name=STEP_TASK, queue=QUEUE)
    def run_step(step_run_id: int) -> None:
        row = store.step_run(step_run_id)
        if row is None or row.state != "planned":
            return  # another pass took it (or it settled): nothing to do
        report(passes.run(store, options.transport, options.batch, options.lease))

    @app.periodic(cron=SWEEP_CRON, periodic_id="sweep")
    @app.task(name=SWEEP_TASK, queue=QUEUE, queueing_lock=SWEEP_TASK)
    async def sweep(timestamp: int) -> None:
        await asyncio.to_thread(store.sweep, int(store.clock()))
        stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER)
        for job in stalled:
            log.warning("job %s of a silent worker goes back to the queue", job.id)
            await app.job_manager.retry_job(job)
        result = await asyncio.to_thread(
            passes.run, store, options.transport, options.batch, options.lease
        )
        report(result)

    if options.mailbox is not None:
        mailbox = options.mailbox

        @app.periodic(cron=INBOX_CRON, periodic_id="inbox")
        @app.task(name=INBOX_TASK, queue=QUEUE, queueing_lock=INBOX_TASK, priority=INBOX_PRIORITY)
        def inbox(timestamp: int) -> None:
            polled = poll_inbox(store, mailbox)
            if polled is not None and on_poll is not None:
                on_poll(polled)

        del inbox  # registered on the app

    del run_step, sweep  # registered on the app
    return app, store, passes


def hide_lost_connection(record: logging.LogRecord) -> bool:
    """A logging filter: False for a record whose traceback is of a lost connection (a job
    or side task of procrastinate that failed with it, a job task whose status could not
    be saved, logged by asyncio); the worker reports the outage itself, in one line."""
    return not (record.exc_info and is_lost_connection(record.exc_info[1]))


class _SideTaskFailure(logging.Handler):
    """Keeps the error of the side task whose failure stopped procrastinate's worker, and
    when it came: procrastinate only logs it (action `side_task_failed`), then stops as if
    asked to, once its running jobs are done."""

    def __init__(self) -> None:
        super().__init__()
        self.error: BaseException | None = None
        self.at: float | None = None  # time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "action", None) == "side_task_failed" and record.exc_info:
            self.error, self.at = record.exc_info[1], time.monotonic()


def _reason(exc: BaseException) -> str:
    """The reason of a lost connection, in one line."""
    import psycopg

    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, ConnectionLost):
            return current.reason
        if isinstance(current, psycopg.OperationalError):
            return connection_reason(current)
        current = current.__cause__ or current.__context__
    return str(exc)


def _connect(url: str) -> None:
    import psycopg

    psycopg.connect(url, connect_timeout=5).close()


def run_worker(
    url: str,
    options: WorkerOptions,
    *,
    on_report: Callable[[RunReport], None] | None = None,
    on_poll: Callable[[PollReport], None] | None = None,
) -> None:
    """Run a worker until SIGINT/SIGTERM (running jobs finish first), or until no job is
    due with `until_idle`; through lost connections, until one lasts `reconnect_for`
    seconds (then `ConnectionLost`)."""
    app, store, passes = make_app(url, options, on_report=on_report, on_poll=on_poll)
    try:
        asyncio.run(_supervise(app, store, passes, options, on_poll))
    finally:
        store.close()


async def _supervise(
    app: App,
    store: PostgresStore,
    passes: Passes,
    options: WorkerOptions,
    on_poll: Callable[[PollReport], None] | None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    stop_signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal() -> None:
        stop.set()
        passes.stop()
        for sig in stop_signals:  # a second signal ends the process at once
            loop.remove_signal_handler(sig)

    for sig in stop_signals:
        loop.add_signal_handler(sig, on_signal)
    where = redact(store.url)
    lost_at: float | None = None  # time.monotonic() of the loss, while it lasts
    delay = RETRY_FIRST
    try:
        while not stop.is_set():
            failure = _SideTaskFailure()
            try:
                if lost_at is not None:
                    await asyncio.to_thread(_connect, store.url)
                    log.warning(
                        "connected to PostgreSQL at %s again after %.0f s; carrying on",
                        where,
                        time.monotonic() - lost_at,
                    )
                    lost_at, delay = None, RETRY_FIRST
                await asyncio.to_thread(_start, store, options, on_poll)
                if stop.is_set() or await _serve(app, options, stop, failure):
                    return
            except Exception as exc:
                if not is_lost_connection(exc):
                    raise
                reason = _reason(exc)
                if lost_at is None:
                    lost_at = failure.at or time.monotonic()
                    log.warning(
                        "lost the connection to PostgreSQL at %s (%s); trying again for up to %g s",
                        where,
                        reason,
                        options.reconnect_for,
                    )
                elif time.monotonic() - lost_at >= options.reconnect_for:  # a try failed
                    raise ConnectionLost(
                        f"lost the connection to PostgreSQL at {where} and could not "
                        f"connect again for {options.reconnect_for:g} s: {reason}",
                        reason=reason,
                        hint="check that the server is up and accepts connections, then "
                        "start the worker again (systemd: Restart=on-failure); what was in "
                        "flight is settled when its lease ends",
                    ) from exc
                left = max(0.0, lost_at + options.reconnect_for - time.monotonic())
                with contextlib.suppress(TimeoutError):  # the wait ends; or a signal
                    await asyncio.wait_for(stop.wait(), min(delay, left))
                delay = min(delay * 2, RETRY_CAP)
    finally:
        if not stop.is_set():
            for sig in stop_signals:
                loop.remove_signal_handler(sig)


def _start(
    store: PostgresStore, options: WorkerOptions, on_poll: Callable[[PollReport], None] | None
) -> None:
    """What a (re)starting worker does before it takes any job."""
    if options.mailbox is not None:
        # Replies that came while no worker ran stop their contacts' due sends.
        polled = poll_inbox(store, options.mailbox)
        if polled is not None and on_poll is not None:
            on_poll(polled)
    # Ended leases expire first: what a dead worker (or a pass the lost connection cut
    # off) left claimed is due again, with its job; what it left `sending` is `unknown`.
    store.sweep(int(store.clock()))


async def _serve(
    app: App, options: WorkerOptions, stop: asyncio.Event, failure: _SideTaskFailure
) -> bool:
    """Run procrastinate's worker until it stops. True when it stopped as asked (a
    signal; no job due with `until_idle`); an error when its connection broke."""
    worker_log = logging.getLogger("procrastinate.worker")
    worker_log.addHandler(failure)
    try:
        async with app.open_async():
            work = asyncio.create_task(
                app.run_worker_async(
                    queues=[QUEUE],
                    concurrency=options.concurrency,
                    wait=not options.until_idle,
                    name=options.name or "worker",  # procrastinate's default name
                    update_heartbeat_interval=STALLED_AFTER / 3,
                    stalled_worker_timeout=STALLED_AFTER,
                    # Finished jobs are of no use once their step run recorded the outcome.
                    delete_jobs="successful",
                    install_signal_handlers=False,  # ours: `stop`
                )
            )
            asked = asyncio.create_task(stop.wait())
            await asyncio.wait({work, asked}, return_when=asyncio.FIRST_COMPLETED)
            asked.cancel()
            if not work.done():
                work.cancel()  # procrastinate's worker lets running jobs finish, then stops
            try:
                await work
            except asyncio.CancelledError:
                pass
            except Exception as exc:
                # Asked to stop, or stopping after a side task failed: the end of
                # procrastinate's worker (saving job states, unregistering) may fail too.
                if not (is_lost_connection(exc) and (stop.is_set() or failure.error)):
                    raise
    finally:
        worker_log.removeHandler(failure)
    if stop.is_set():
        return True
    if failure.error is not None:
        raise failure.error
    if options.until_idle:
        return True
    # With `wait`, procrastinate's worker stops of itself only when a side task failed.
    stopped = "procrastinate's worker stopped"
    raise ConnectionLost(stopped, reason=stopped)
