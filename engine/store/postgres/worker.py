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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import QUEUE, STEP_TASK, PostgresStore

if TYPE_CHECKING:
    from procrastinate import App

    from ...inbound.imap import Mailbox
    from ...inbound.poll import PollReport
    from ...run.loop import RunReport

SWEEP_TASK = "cadence.sweep"
SWEEP_CRON = "* * * * *"
INBOX_TASK = "cadence.inbox"
INBOX_CRON = "* * * * *"
# Above the step jobs (priority 0): the poll of a minute runs before its sends.
INBOX_PRIORITY = 10
# A worker silent for this long (no heartbeat) is dead: its jobs go back to the queue.
STALLED_AFTER = 30.0

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


def database_clock(store: PostgresStore) -> Any:
    """A runner clock that starts at the database's time and moves on with real time."""
    from ...run.clock import Clock

    return Clock(datetime.fromtimestamp(store.clock(), UTC))


def run_pass(store: PostgresStore, transport_url: str, batch: int, lease: float) -> RunReport:
    """One pass of the ordinary runner over what is due, on the database clock."""
    from ...run.loop import Runner, RunOptions
    from ...transports import parse_transport

    runner = Runner(
        store,
        parse_transport(transport_url),
        clock=database_clock(store),
        options=RunOptions(batch=batch, lease=lease),
    )
    return runner.run_once()


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
) -> tuple[App, PostgresStore]:
    """The procrastinate app of a worker, with its tasks, on `url`."""
    from procrastinate import App, PsycopgConnector

    store = PostgresStore(url, max_connections=options.concurrency + 2)
    app = App(connector=PsycopgConnector(conninfo=url, min_size=1, max_size=4))

    def report(result: RunReport) -> None:
        if on_report is not None and any(result.as_dict().values()):
            on_report(result)

    @app.task(name=STEP_TASK, queue=QUEUE)
    def run_step(step_run_id: int) -> None:
        row = store.step_run(step_run_id)
        if row is None or row.state != "planned":
            return  # another pass took it (or it settled): nothing to do
        report(run_pass(store, options.transport, options.batch, options.lease))

    @app.periodic(cron=SWEEP_CRON, periodic_id="sweep")
    @app.task(name=SWEEP_TASK, queue=QUEUE, queueing_lock=SWEEP_TASK)
    async def sweep(timestamp: int) -> None:
        await asyncio.to_thread(store.sweep, int(store.clock()))
        stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER)
        for job in stalled:
            log.warning("job %s of a silent worker goes back to the queue", job.id)
            await app.job_manager.retry_job(job)
        result = await asyncio.to_thread(
            run_pass, store, options.transport, options.batch, options.lease
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
    return app, store


def run_worker(
    url: str,
    options: WorkerOptions,
    *,
    on_report: Callable[[RunReport], None] | None = None,
    on_poll: Callable[[PollReport], None] | None = None,
) -> None:
    """Run a worker until SIGINT/SIGTERM (running jobs finish first), or until no job is
    due with `until_idle`."""
    app, store = make_app(url, options, on_report=on_report, on_poll=on_poll)
    try:
        if options.mailbox is not None:
            # Replies that came while no worker ran stop their contacts' due sends.
            polled = poll_inbox(store, options.mailbox)
            if polled is not None and on_poll is not None:
                on_poll(polled)
        # A starting worker first expires ended leases: what a dead worker left claimed
        # is due again (with its job), what it left `sending` becomes `unknown`.
        store.sweep(int(store.clock()))
        app.run_worker(
            queues=[QUEUE],
            concurrency=options.concurrency,
            wait=not options.until_idle,
            name=options.name,
            update_heartbeat_interval=STALLED_AFTER / 3,
            stalled_worker_timeout=STALLED_AFTER,
            # Finished jobs are of no use once their step run recorded the outcome.
            delete_jobs="successful",
        )
    finally:
        store.close()
