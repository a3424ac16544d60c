"""`cadence worker` and `cadence run --once` on PostgreSQL, as real processes.

Several workers on one database (processes on loopback), thousands of due emails to a
real SMTP server: every Message-ID is received exactly once; a worker SIGKILLed mid-batch
leaves its in-flight emails `unknown`, never resent; workers whose clocks are hours
apart still agree (leases and "now" come from the database clock).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cadence_engine.engine.store import open_store
from cadence_engine.engine.store.contract import StepState
from tests.helpers.runner_env import ROOT, cadence_cmd, write_cadence, write_contacts
from tests.helpers.smtp_server import SmtpServer, serve

# Worker processes with this machine's clock moved by OFFSET seconds (in the process).
SKEWED = (
    "import os, sys, time\n"
    "real = time.time\n"
    "offset = float(os.environ['CLOCK_OFFSET'])\n"
    "time.time = lambda: real() + offset\n"
    "sys.argv = ['cadence', *sys.argv[1:]]\n"
    "from cadence_engine import cli\n"
    "cli.main()\n"
)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    (tmp_path / "smtp").mkdir()
    yield from serve(tmp_path / "smtp")


def launch_due(folder: Path, url: str, count: int, *, hours_ago: float = 1.0) -> None:
    """`count` contacts whose one email was due `hours_ago` by the real clock."""
    due = datetime.now(UTC) - timedelta(hours=hours_ago)
    cadence = write_cadence(folder)
    contacts = write_contacts(folder, count)
    day = due.date().isoformat()
    result = cadence_cmd(
        "launch", str(cadence), "--contacts", str(contacts), "--db", url,
        "--start", f"{day}T00:00Z", "--send-at", f"{due:%H:%M}", "--now", f"{day}T00:00Z",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def worker(url: str, env: dict[str, str], *args: str, offset: float = 0.0) -> subprocess.Popen[str]:
    full = {
        **os.environ,
        **env,
        "CADENCE_DB": url,
        "CLOCK_OFFSET": str(offset),
        "CADENCE_ROOT": str(ROOT),
        "NO_COLOR": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-c", SKEWED, "worker", *args],
        env=full,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "internal error" not in err
    return out


def states(url: str) -> Counter[StepState]:
    with open_store(url) as store:
        rows = store.step_runs_of(e.id for e in store.enrolments())
    return Counter(r.state for steps in rows.values() for r in steps)


def test_worker_sends_what_is_due_to_the_outbox(tmp_path: Path, postgres_url: str) -> None:
    launch_due(tmp_path, postgres_url, 25)
    outbox = tmp_path / "outbox"
    out = finish(worker(postgres_url, {}, "--until-idle", "--transport", f"outbox:{outbox}"))
    assert "sent" in out
    assert len(list(outbox.glob("*.eml"))) == 25
    assert states(postgres_url) == Counter({StepState.SENT: 25})
    # Nothing is due any more: a second worker sends nothing.
    finish(worker(postgres_url, {}, "--until-idle", "--transport", f"outbox:{outbox}"))
    assert len(list(outbox.glob("*.eml"))) == 25


def test_run_once_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    launch_due(tmp_path, postgres_url, 10)
    outbox = tmp_path / "outbox"
    result = cadence_cmd(
        "run", "--once", "-f", "json", "--db", postgres_url, "--transport", f"outbox:{outbox}"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sent"] == 10
    assert len(list(outbox.glob("*.eml"))) == 10
    status = cadence_cmd("status", "-f", "json", "--db", postgres_url)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["cadences"][0]["sent"] == 10


def test_four_workers_with_skewed_clocks_send_every_message_once(
    tmp_path: Path, postgres_url: str, smtp: SmtpServer
) -> None:
    count = 2000
    launch_due(tmp_path, postgres_url, count)
    env = {**smtp.env(), "CADENCE_TRANSPORT": smtp.url + "?connections=2"}
    # Hours apart: a worker five hours behind would think nothing is due by its own clock,
    # one five hours ahead would think every lease had run out.
    offsets = (0.0, 5 * 3600.0, -5 * 3600.0, 3 * 3600.0)
    procs = [
        worker(postgres_url, env, "--until-idle", "--concurrency", "2", "--batch", "50",
               offset=o)
        for o in offsets
    ]  # fmt: skip
    for p in procs:
        finish(p)
    ids = Counter(smtp.recorder.message_ids())
    assert len(ids) == count and set(ids.values()) == {1}
    assert states(postgres_url) == Counter({StepState.SENT: count})


def test_a_worker_killed_mid_batch_never_causes_a_second_send(
    tmp_path: Path, postgres_url: str, smtp: SmtpServer
) -> None:
    count = 1500
    launch_due(tmp_path, postgres_url, count)
    env = {**smtp.env(), "CADENCE_TRANSPORT": smtp.url}
    lease = "3"
    victim = worker(postgres_url, env, "--batch", "40", "--lease", lease)
    while len(smtp.recorder.message_ids()) < 200:  # well into the run
        assert victim.poll() is None, victim.communicate()
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    # The others finish the work; the victim's leases run out by the database clock.
    survivors = [
        worker(postgres_url, env, "--until-idle", "--batch", "40", "--lease", lease)
        for _ in range(2)
    ]
    for p in survivors:
        finish(p)
    with open_store(postgres_url) as store:
        last = max(
            (r.lease_until or 0.0)
            for steps in store.step_runs_of(e.id for e in store.enrolments()).values()
            for r in steps
        )
        while store.clock() <= last:
            time.sleep(0.2)
    finish(worker(postgres_url, env, "--until-idle", "--batch", "40"))
    ids = Counter(smtp.recorder.message_ids())
    assert set(ids.values()) == {1}, "a message was delivered twice"
    final = states(postgres_url)
    assert set(final) <= {StepState.SENT, StepState.UNKNOWN}
    assert final[StepState.SENT] + final[StepState.UNKNOWN] == count
    # In doubt: at most the killed worker's one batch (its in-flight messages).
    assert final[StepState.UNKNOWN] <= 40
    with open_store(postgres_url) as store:
        sent = {
            r.message_id
            for steps in store.step_runs_of(e.id for e in store.enrolments()).values()
            for r in steps
            if r.state is StepState.SENT
        }
    assert sent <= set(ids)


def test_worker_refuses_a_sqlite_store(tmp_path: Path) -> None:
    result = cadence_cmd("worker", "--db", str(tmp_path / "c.db"))
    assert result.returncode == 2
    assert "needs a PostgreSQL store" in result.stderr
