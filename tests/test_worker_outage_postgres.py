"""`cadence worker` when PostgreSQL goes away, as real processes on a server of their own.

A restart (every connection cut) under a busy worker: it logs the outage in one line,
connects again and carries on; no Message-ID is written twice, every email ends `sent`
or `unknown` (at most the batches in flight at the cut), SIGTERM afterwards exits 0.
A server that stays down longer than --reconnect-for: exit 1 with one `error:` line.
SIGTERM while it waits for the server: exit 0. Never a traceback on stderr.
"""

from __future__ import annotations

import contextlib
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

from cadence_engine.engine.store.contract import StepState
from tests.helpers.postgres import Cluster, _bindir
from tests.helpers.runner_env import ROOT, cadence_cmd, write_cadence, write_contacts
from tests.test_worker_postgres import states

BATCH, CONCURRENCY = 20, 2
LOST = "WARNING cadence.worker: lost the connection to PostgreSQL at "


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A server of this test's own: it is stopped and restarted under the worker."""
    if os.environ.get("CADENCE_TEST_POSTGRES"):
        pytest.skip("restarts a PostgreSQL of its own: needs the server binaries, not a DSN")
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are needed: apt-get install postgresql")
    made = Cluster(bindir)
    made.start()
    try:
        yield made
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # a test may have stopped it
            made.stop("immediate")
        made.remove()


def launch_due(folder: Path, url: str, count: int) -> None:
    due = datetime.now(UTC) - timedelta(hours=1)
    day = due.date().isoformat()
    result = cadence_cmd(
        "launch", str(write_cadence(folder)), "--contacts", str(write_contacts(folder, count)),
        "--db", url, "--start", f"{day}T00:00Z", "--send-at", f"{due:%H:%M}",
        "--now", f"{day}T00:00Z",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def cadence(
    url: str, outbox: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cadence_engine.cli", *args],
        env={
            **os.environ,
            "CADENCE_DB": url,
            "CADENCE_TRANSPORT": f"outbox:{outbox}",
            "NO_COLOR": "1",
            **(env or {}),
        },
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stopped(proc: subprocess.Popen[str]) -> bool:
    """Whether `proc` is stopped (state T in /proc)."""
    try:
        with open(f"/proc/{proc.pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "T"
    except FileNotFoundError:  # it has exited (and been reaped)
        return False


def written(outbox: Path) -> int:
    return len(list(outbox.glob("*.eml"))) if outbox.exists() else 0


def wait_for(outbox: Path, count: int, proc: subprocess.Popen[str]) -> None:
    while written(outbox) < count:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def message_ids(outbox: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for path in outbox.glob("*.eml"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("message-id:"):
                ids[line.split(":", 1)[1].strip()] += 1
                break
    return ids


def test_a_worker_carries_on_through_a_server_restart(tmp_path: Path, cluster: Cluster) -> None:
    count = 4000
    launch_due(tmp_path, cluster.dsn, count)
    outbox = tmp_path / "outbox"
    worker = cadence(
        cluster.dsn, outbox, "worker", "--concurrency", str(CONCURRENCY), "--batch", str(BATCH),
        "--lease", "3",
    )  # fmt: skip
    wait_for(outbox, 300, worker)
    cluster.restart()  # every connection cut, the server back a moment later
    # The same process sends the rest: rows the cut left claimed are due again when
    # their lease ends, those it left `sending` become `unknown`.
    settled = {StepState.SENT, StepState.UNKNOWN}
    while not set(final := states(cluster.dsn)) <= settled:
        assert worker.poll() is None, worker.communicate()
        time.sleep(0.2)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    # Our own lines only: the outage's first, then at most one reconnection's. (Passes
    # already running go on through the store's pool, which reconnects by itself; when
    # they finish the queue before procrastinate's worker is started again, the SIGTERM
    # comes first and there is no reconnection to report.)
    lines = err.splitlines()
    assert all(line.startswith("WARNING cadence.worker: ") for line in lines), err
    assert [line for line in lines if line.startswith(LOST)] == lines[:1], err
    assert len([line for line in lines if "again after" in line]) <= 1, err
    ids = message_ids(outbox)
    assert set(ids.values()) == {1}, "a message was written twice"
    assert final[StepState.SENT] + final[StepState.UNKNOWN] == count
    assert final[StepState.UNKNOWN] <= CONCURRENCY * BATCH
    assert final[StepState.SENT] <= len(ids) <= count


def test_a_server_down_longer_than_the_bound_ends_the_worker_with_exit_1(
    tmp_path: Path, cluster: Cluster
) -> None:
    launch_due(tmp_path, cluster.dsn, 30)
    outbox = tmp_path / "outbox"
    worker = cadence(cluster.dsn, outbox, "worker", "--reconnect-for", "2")
    wait_for(outbox, 30, worker)
    cluster.stop("fast")
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    where = f"PostgreSQL at postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    assert err.splitlines() == [
        err.splitlines()[0],
        f"error: lost the connection to {where} and could not connect again for 2 s: "
        "Connection refused",
        err.splitlines()[2],
    ], err
    assert err.startswith(LOST), err
    assert err.splitlines()[2].startswith("  hint: check that the server is up"), err


def test_sigterm_while_the_server_is_down_exits_0(tmp_path: Path, cluster: Cluster) -> None:
    launch_due(tmp_path, cluster.dsn, 30)
    outbox = tmp_path / "outbox"
    worker = cadence(cluster.dsn, outbox, "worker")
    wait_for(outbox, 30, worker)
    cluster.stop("fast")
    assert worker.stderr is not None
    first = worker.stderr.readline()  # the outage's line: it is waiting to connect again
    assert first.startswith(LOST) and first.rstrip().endswith("trying again for up to 60 s")
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, first + err
    assert err == "", err


def _frozen_run(cluster: Cluster, outbox: Path) -> subprocess.Popen[str]:
    """`run --once` over 4,000 due emails, stopped (SIGSTOP) by itself after its 200th
    message: whatever this machine's speed, the test acts while the run is mid-queue."""
    freeze = {"CADENCE_FAULT": "after-250", "CADENCE_FAULT_AFTER": "200",
              "CADENCE_FAULT_SIGNAL": "STOP"}  # fmt: skip
    run = cadence(cluster.dsn, outbox, "run", "--once", "--batch", str(BATCH), env=freeze)
    while not stopped(run):
        assert run.poll() is None, run.communicate()
        time.sleep(0.05)
    return run


def _let_go(run: subprocess.Popen[str]) -> str:
    """Continue `run` each time a later message stops it again, to its end: its stderr."""
    while run.poll() is None:
        if stopped(run):
            run.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    return run.communicate(timeout=120)[1]


def test_run_once_carries_on_past_a_restart_between_transactions(
    tmp_path: Path, cluster: Cluster
) -> None:
    launch_due(tmp_path, cluster.dsn, 4000)
    outbox = tmp_path / "outbox"
    run = _frozen_run(cluster, outbox)
    cluster.restart()  # every connection cut while the run holds none in a transaction
    err = _let_go(run)
    # The pool replaces the cut connections: the run goes on, quietly, to the end.
    assert run.returncode == 0 and err == "", err
    assert set(message_ids(outbox).values()) == {1} and written(outbox) == 4000
    assert set(states(cluster.dsn)) == {StepState.SENT}


def test_run_once_that_loses_its_server_says_so_in_one_error(
    tmp_path: Path, cluster: Cluster
) -> None:
    launch_due(tmp_path, cluster.dsn, 4000)
    outbox = tmp_path / "outbox"
    run = _frozen_run(cluster, outbox)
    cluster.stop("immediate")
    try:
        err = _let_go(run)
    finally:
        cluster.start_again()
    assert run.returncode == 1, err
    # Nothing of psycopg's own warnings ("discarding closed connection …"), one line each.
    error, hint = err.splitlines()
    assert error.startswith(f"error: lost the connection to PostgreSQL at {cluster.dsn}: "), err
    assert hint == "  hint: nothing of the failed operation was kept; run the command again"
