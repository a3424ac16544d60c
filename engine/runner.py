"""The cron loop: `cadence run --every CRON` runs a pass at once, then at every fire time.

The run itself is `engine.run.loop.Runner`; this module only decides when, and makes
SIGINT/SIGTERM a request to stop (the batch in hand is finished and recorded, the rest
given back), for `run --once` as for `run --every`. `every` and `on_stop_signals` are the
loop and the signal handling alone, shared with `cadence inbox poll --every`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from .cron import CronSchedule
from .errors import CadenceError, UsageError
from .run.loop import Runner, RunReport

USAGE_EXIT = UsageError.exit_code


def run_every(
    runner: Runner,
    schedule: CronSchedule,
    on_report: Callable[[datetime, RunReport], None],  # the run's start, its report
    on_error: Callable[[CadenceError], None],
    *,
    before_pass: Callable[[], None] | None = None,
) -> None:
    """Run a pass at once, then at every fire time of a cron expression (see engine.cron)
    until SIGINT/SIGTERM, so work already due does not wait for the first fire time.

    `before_pass` runs first at each pass (e.g. polling a mailbox, so a reply that arrived
    before a step's time stops it); a CadenceError from it is reported like a failed pass
    and that pass is skipped: sending without having heard is the failure to avoid. A
    signal only sets a flag: the batch in hand is finished and recorded, the rest is
    released (due again), then the loop ends.
    """

    def one_pass(started: datetime) -> None:
        if before_pass is not None:
            try:
                before_pass()
            except CadenceError as exc:  # whatever it is: this pass does not send
                on_error(exc)
                return
        report = runner.run_once()  # e.g. SMTP down: `every` tries at the next fire time
        on_report(started, report)

    with stopping_on_signals(runner):
        every(schedule, runner.clock.now, lambda: runner.stop_requested, one_pass, on_error)


def every(
    schedule: CronSchedule,
    clock: Callable[[], datetime],
    stopped: Callable[[], bool],
    once: Callable[[datetime], None],
    on_error: Callable[[CadenceError], None],
) -> None:
    """Call `once(start)` at once, then at every fire time of a checked cron schedule
    (engine.cron.parse_cron) after the last call began, until `stopped()`; a CadenceError from
    `once` goes to `on_error` and the next call is at the next fire time, except a usage
    error (exit 2: a store or setting that cannot be used), which waiting does not mend:
    it ends the loop. `stopped` is checked at least every 0.2 s while waiting, never in
    the middle of a call."""
    from croniter import croniter

    fires = croniter(schedule.fields, clock())
    fire = clock()
    while not stopped():
        while not stopped():
            left = fire.timestamp() - clock().timestamp()
            if left <= 0:
                break
            time.sleep(min(left, 0.2))
        if stopped():
            break
        started = clock()
        fire = fires.get_next(datetime)
        try:
            once(started)
        except CadenceError as exc:
            if exc.exit_code == USAGE_EXIT:
                raise
            on_error(exc)


@contextmanager
def stopping_on_signals(runner: Runner) -> Iterator[None]:
    """SIGINT and SIGTERM only ask `runner` to stop: the message in hand is finished and
    recorded, the rest of its batch is released (due again at the next run), and the run
    returns normally — for `run --once` as for `run --every`. Nothing is left `sending`."""

    def stop() -> None:
        runner.stop_requested = True

    with on_stop_signals(stop):
        yield


@contextmanager
def on_stop_signals(request_stop: Callable[[], None]) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM only call `request_stop` (the work in hand
    finishes); the previous handlers come back after it."""
    import signal

    def handler(signum: int, frame: object) -> None:
        request_stop()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
