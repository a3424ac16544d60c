"""The cron loop: `cadence run --every CRON` runs a pass at every fire time.

The run itself is `engine.run.loop.Runner`; this module only decides when, and makes
SIGINT/SIGTERM a request to stop (the batch in hand is finished and recorded, the rest
given back), for `run --once` as for `run --every`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from engine.errors import CadenceError
from engine.run.loop import Runner, RunReport


def run_every(
    runner: Runner,
    expression: str,
    on_report: Callable[[datetime, RunReport], None],  # the run's start, its report
    on_error: Callable[[CadenceError], None],
    *,
    before_pass: Callable[[], None] | None = None,
) -> None:
    """Run at every fire time of a 5-field cron expression until SIGINT/SIGTERM.

    `before_pass` runs first at each fire time (e.g. polling a mailbox, so a reply that
    arrived before a step's time stops it); a CadenceError from it is reported like a
    failed pass. A signal only sets a flag: the batch in hand is finished and recorded,
    the rest is released (due again), then the loop ends.
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
