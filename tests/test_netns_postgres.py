"""Many machines, simulated: workers in two network namespaces, PostgreSQL and an SMTP
server in a third, joined only by veth links on addresses this test made.

8 workers (4 per "machine", clocks hours apart) over due emails to the SMTP server;
one worker is SIGKILLed mid-batch and PostgreSQL is restarted (connections cut) mid-run:
the others connect again and finish (exit 0, no traceback). Every Message-ID must be
received exactly once; what a killed worker had in flight is
`unknown`, never resent. CADENCE_NETNS_EMAILS sets the number of emails (default 3,000).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers.certs import self_signed
from tests.helpers.postgres import Cluster, _bindir, _free_port
from tests.helpers.runner_env import ROOT, write_cadence, write_contacts
from tests.helpers.smtp_server import PASSWORD, USER
from tests.test_worker_postgres import SKEWED

NET = "10.213"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Machines:
    server: str  # namespace of PostgreSQL and the SMTP server
    workers: tuple[str, str]  # the two worker namespaces
    cluster: Cluster
    smtp_port: int
    cafile: Path
    received: Path
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def db(self, machine: int) -> str:
        return f"postgresql://postgres@{NET}.{machine + 1}.1:{self.cluster.port}/postgres"

    def env(self, machine: int) -> dict[str, str]:
        return {
            **os.environ,
            "CADENCE_DB": self.db(machine),
            "CADENCE_TRANSPORT": f"smtp://{NET}.{machine + 1}.1:{self.smtp_port}",
            "CADENCE_SMTP_CAFILE": str(self.cafile),
            "CADENCE_SMTP_USER": USER,
            "CADENCE_SMTP_PASSWORD": PASSWORD,
            "CADENCE_ROOT": str(ROOT),
            "NO_COLOR": "1",
        }

    def cadence(self, machine: int, *args: str, offset: float = 0.0) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.workers[machine], sys.executable, "-c", SKEWED, *args],
            env={**self.env(machine), "CLOCK_OFFSET": str(offset)},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(proc)
        return proc

    def message_ids(self) -> list[str]:
        if not self.received.exists():
            return []
        return [line for line in self.received.read_text().splitlines() if line]


def _netns_allowed() -> bool:
    if os.geteuid() != 0:
        return False
    probe = f"cadence-probe-{os.getpid()}"
    try:
        ip("netns", "add", probe)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False
    ip("netns", "del", probe)
    return True


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[Machines]:
    if not _netns_allowed():
        pytest.skip(
            "network namespaces need root and `ip netns` (iproute2); "
            "tests/test_worker_postgres.py runs the same on loopback"
        )
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are needed: apt-get install postgresql")
    tag = uuid.uuid4().hex[:6]
    server, workers = f"cdc-srv-{tag}", (f"cdc-m1-{tag}", f"cdc-m2-{tag}")
    made: list[str] = []
    sink: subprocess.Popen[str] | None = None
    machines: Machines | None = None
    cluster: Cluster | None = None
    try:
        for ns in (server, *workers):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        for n, ns in enumerate(workers, 1):
            here, there = f"cw{n}{tag}", f"cs{n}{tag}"
            ip("link", "add", here, "netns", ns, "type", "veth", "peer", "name", there,
               "netns", server)  # fmt: skip
            ip("-n", ns, "addr", "add", f"{NET}.{n}.2/24", "dev", here)
            ip("-n", server, "addr", "add", f"{NET}.{n}.1/24", "dev", there)
            ip("-n", ns, "link", "set", here, "up")
            ip("-n", server, "link", "set", there, "up")
        cluster = Cluster(
            bindir, listen=f"{NET}.1.1,{NET}.2.1", netns=server, trust=f"{NET}.0.0/16"
        )
        cluster.start()
        cert, key = self_signed(tmp_path, f"IP:{NET}.1.1,IP:{NET}.2.1")
        port = _free_port()
        received = tmp_path / "received.txt"
        sink = subprocess.Popen(
            ["ip", "netns", "exec", server, sys.executable, "-m", "tests.helpers.smtp_sink",
             str(cert), str(key), str(port), str(received)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        machines = Machines(server, workers, cluster, port, cert, received)
        yield machines
    finally:
        if machines is not None:
            for proc in machines.started:  # a failed test leaves none running
                if proc.poll() is None:
                    proc.kill()
                proc.communicate()
        if sink is not None:
            sink.terminate()
            sink.communicate(timeout=30)
        if cluster is not None:
            cluster.stop("immediate")
            cluster.remove()
        for ns in made:
            ip("netns", "del", ns)


def finished(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return out


def test_eight_workers_on_two_machines_send_every_message_once(
    tmp_path: Path, machines: Machines
) -> None:
    count = int(os.environ.get("CADENCE_NETNS_EMAILS", "3000"))
    due = datetime.now(UTC) - timedelta(hours=1)
    day = due.date().isoformat()
    cadence, contacts = write_cadence(tmp_path), write_contacts(tmp_path, count)
    launch = machines.cadence(
        0, "launch", str(cadence), "--contacts", str(contacts), "--start", f"{day}T00:00Z",
        "--send-at", f"{due:%H:%M}", "--now", f"{day}T00:00Z",
    )  # fmt: skip
    finished(launch)
    args = ("worker", "--until-idle", "--batch", "50", "--lease", "5", "-f", "json")
    offsets = (0.0, 4 * 3600.0, -4 * 3600.0, 7200.0)
    victim = machines.cadence(1, "worker", "--batch", "50", "--lease", "5")
    workers = [machines.cadence(m, *args, offset=o) for m in (0, 1) for o in offsets[:3]]
    workers.append(machines.cadence(0, *args, offset=offsets[3]))
    # SIGKILL one worker well into the run, then cut every connection by a restart.
    while len(machines.message_ids()) < count // 5:
        assert victim.poll() is None, victim.communicate()
        if all(w.poll() is not None for w in workers):
            break  # the others were faster: the victim dies idle, still a kill
        time.sleep(0.05)
    victim.kill()
    victim.communicate()
    while len(machines.message_ids()) < count // 2:
        if all(w.poll() is not None for w in workers):
            break
        time.sleep(0.05)
    machines.cluster.restart()
    for w in workers:  # each connects again after the restart and goes on
        finished(w)
    # After every lease ran out by the database clock, one more worker per machine
    # sweeps and sends what is left.
    time.sleep(6)
    for m in (0, 1):
        finished(machines.cadence(m, *args))
    status = machines.cadence(0, "status", "-f", "json")
    out, err = status.communicate(timeout=60)
    assert status.returncode in (0, 1), err  # 1: there are unknown sends to settle
    report = json.loads(out)
    version = report["cadences"][0]
    ids = Counter(machines.message_ids())
    assert set(ids.values()) == {1}, "a message was received twice"
    assert version["sent"] + version["unknown"] == count
    assert version["sent"] <= len(ids) <= count
    assert version["unknown"] <= 2 * 50  # at most a batch per cut: the killed and restarted
