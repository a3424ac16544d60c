"""The cron loop: `cadence run --every CRON` runs a pass at once, then at every fire time.

The run itself is `engine.run.loop.Runner`; this module only decides when, and makes
SIGINT/SIGTERM a request to stop (the batch in hand is finished and recorded, the rest
given back), for `run --once` as for `run --every`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from .cron import check_cron as check_cron  # where `--every` is checked
from .errors import CadenceError
from .run.loop import Runner, RunReport


def run_every(
    runner: Runner,
    expression: str,
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
    from croniter import croniter

    from .cron import parse_cron

    with stopping_on_signals(runner):
        schedule = croniter(parse_cron(expression).fields, runner.clock.now())
        fire = runner.clock.now()
        while not runner.stop_requested:
            while not runner.stop_requested:
                left = fire.timestamp() - runner.clock.now().timestamp()
                if left <= 0:
                    break
                time.sleep(min(left, 0.2))
            if runner.stop_requested:
                break
            started = runner.clock.now()
            fire = schedule.get_next(datetime)
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
