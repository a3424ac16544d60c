"""The outbox stages each message in the render worker and hands it over in the runner.

Staging writes the whole message to a hidden `.tmp-<pid>-…` file, which delivers nothing;
the hand-over (a rename into `<message-id>.eml`) happens only after `sending` is
committed and the last signal check passed. What a signal stopped is discarded; what a
crashed run left staged is swept once its writer is gone and it is an hour old.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.launch import launch
from engine.runner import Clock, Runner, RunOptions, RunReport
from engine.signals import record
from engine.store import SignalKind, StepRow
from engine.store.sqlite import SqliteStore
from engine.transports import Envelope, Staged
from engine.transports.outbox import STALE_AFTER, OutboxTransport, file_name, staged_name
from tests.helpers.runner_env import write_cadence, write_contacts

LAUNCHED = datetime(2026, 3, 2, 8, tzinfo=UTC)
RUN_AT = datetime(2026, 3, 2, 10, tzinfo=UTC)


class ReplyOnFirstHandOver(OutboxTransport):
    """Hands over, and the first time records a reply through another connection."""

    def __init__(self, folder: Path, db: Path, who: str) -> None:
        super().__init__(folder)
        self.db, self.who = db, who
        self.handed: list[str] = []

    def send_staged(self, staged: Staged) -> str:
        answer = super().send_staged(staged)
        self.handed.append(staged.message_id)
        if len(self.handed) == 1:
            with SqliteStore(self.db) as other:
                record(other, SignalKind.REPLY, self.who, cadence=None, now=RUN_AT)
        return answer


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every claim goes through the render worker, which stages the messages."""
    monkeypatch.setenv("CADENCE_PIPELINE_ROWS", "1")
    monkeypatch.setenv("CADENCE_WORKERS", "1")


def _launched(tmp_path: Path, contacts: int) -> Path:
    db = tmp_path / "state.db"
    with SqliteStore(db) as store:
        launch(
            store,
            write_cadence(tmp_path),
            write_contacts(tmp_path, contacts),
            now=LAUNCHED,
            start="now",
        )
    return db


def _run(db: Path, transport: OutboxTransport, batch: int) -> tuple[RunReport, list[StepRow]]:
    """One `run_once` at RUN_AT; the first step run of every enrolment after it."""
    with SqliteStore(db) as store:
        runner = Runner(store, transport, clock=Clock(RUN_AT), options=RunOptions(batch=batch))
        report = runner.run_once()
        enrolments = store.status(int(RUN_AT.timestamp()))[0].enrolled
        return report, [store.step_runs(e)[0] for e in range(1, enrolments + 1)]


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".eml"))


@pytest.mark.usefixtures("pipeline")
def test_a_staged_message_a_signal_stopped_is_discarded_never_handed_over(
    tmp_path: Path,
) -> None:
    db = _launched(tmp_path, 4)
    box = tmp_path / "out"
    transport = ReplyOnFirstHandOver(box, db, "person3@example.com")
    # One batch of four: all four are staged by the worker before any is handed over.
    report, rows = _run(db, transport, batch=4)
    assert (report.sent, report.cancelled) == (3, 1)
    stopped = rows[3]
    assert stopped.state == "cancelled" and stopped.message_id not in transport.handed
    assert sorted(p.name for p in box.glob("*.eml")) == sorted(
        file_name(r.message_id or "") for r in rows[:3]
    )
    assert _hidden(box) == []  # the stopped message's staged file is gone too


@pytest.mark.usefixtures("pipeline")
def test_each_staged_batch_is_handed_over_then_recorded_across_many_batches(
    tmp_path: Path,
) -> None:
    db = _launched(tmp_path, 23)
    box = tmp_path / "out"
    report, rows = _run(db, OutboxTransport(box), batch=5)
    assert report.sent == 23 and {r.state for r in rows} == {"sent"}
    assert len(list(box.glob("*.eml"))) == 23 and _hidden(box) == []


def test_a_crashed_runs_staged_files_are_swept_once_their_writer_is_known_gone(
    tmp_path: Path,
) -> None:
    box = tmp_path / "box"
    box.mkdir()
    child = subprocess.Popen(["true"])
    child.wait()
    dead, alive = child.pid, os.getpid()
    old = time.time() - STALE_AFTER - 60
    files = {
        # Written here (this machine, this PID namespace): the writer can be looked up.
        "dead writer": (box / staged_name(dead, "<a@x.example>"), False),
        "live writer, old": (box / staged_name(alive, "<b@x.example>"), True),
        # Written elsewhere: only its age tells.
        "elsewhere, recent": (box / staged_name(alive, "<c@x.example>", "0ther5ac"), False),
        "elsewhere, old": (box / staged_name(dead, "<d@x.example>", "0ther5ac"), True),
        "delivered": (box / "e@x.example.eml", True),
        "not staged": (box / ".tmp-notes.txt", True),
    }
    for name, (path, is_old) in files.items():
        path.write_text(name, encoding="utf-8")
        if is_old:
            os.utime(path, (old, old))
    OutboxTransport(box).open()
    kept = {"live writer, old", "elsewhere, recent", "delivered", "not staged"}
    assert {p.name for p in box.iterdir()} == {files[k][0].name for k in kept}


def test_staging_alone_delivers_nothing_and_a_discard_leaves_nothing(tmp_path: Path) -> None:
    box = OutboxTransport(tmp_path / "box")
    staged = box.stage(Envelope("a@x.example", "b@x.example", "<id1@x.example>"), b"data")
    assert list((tmp_path / "box").glob("*.eml")) == []
    box.discard(staged)
    box.discard(staged)  # twice is harmless
    assert list((tmp_path / "box").iterdir()) == []
    again = box.stage(Envelope("a@x.example", "b@x.example", "<id1@x.example>"), b"data")
    assert box.send_staged(again) == "written id1@x.example.eml"
    box.flush()
    assert (tmp_path / "box" / "id1@x.example.eml").read_bytes() == b"data"


@pytest.mark.parametrize(
    ("fault", "unknown"),
    [
        ("after-claim", 0),  # nothing `sending`: the restart hands every email over once
        ("after-sending-commit", 3),  # the first batch stays `sending`: unknown, none resent
        ("after-250", 3),  # the first batch is in place, unrecorded, when the runner dies
    ],
)
def test_a_killed_pipelined_run_never_delivers_twice(
    fault: str, unknown: int, tmp_path: Path
) -> None:
    from collections import Counter

    from tests.helpers.runner_env import cadence_cmd

    db = _launched(tmp_path, 5)
    box = tmp_path / "out"
    env = {
        "CADENCE_DB": str(db),
        "CADENCE_TRANSPORT": f"outbox:{box}",
        "CADENCE_PIPELINE_ROWS": "1",
        "CADENCE_WORKERS": "1",
    }
    run = ["run", "--once", "--now", "2026-03-02T10:00Z", "--batch", "3", "--lease", "0.5"]
    after = "2" if fault == "after-250" else "0"
    killed = cadence_cmd(*run, env={**env, "CADENCE_FAULT": fault, "CADENCE_FAULT_AFTER": after})
    assert killed.returncode == -9
    time.sleep(0.7)  # the dead runner's lease runs out
    assert cadence_cmd(*run, env=env).returncode == (1 if unknown else 0)
    delivered = Counter(p.name.split(".")[0] for p in box.glob("*.eml"))
    assert all(n == 1 for n in delivered.values()), delivered
    with SqliteStore(db) as store:
        rows = [store.step_runs(e)[0] for e in range(1, 6)]
    assert Counter(r.state for r in rows) == Counter({"sent": 5 - unknown, "unknown": unknown})
    # Every `sent` email is in the outbox; an unknown one is there at most once.
    assert {file_name(r.message_id or "") for r in rows if r.state == "sent"} <= {
        p.name for p in box.glob("*.eml")
    }
    # after-250: the whole first batch was moved into place before the kill, unrecorded.
    expected_in_place = {"after-claim": 5, "after-sending-commit": 2, "after-250": 5}[fault]
    assert len(delivered) == expected_in_place
    # The restart swept what the killed run had staged: its process is gone.
    assert _hidden(box) == []


@pytest.mark.parametrize("pipeline_rows", ["1", "1000"], ids=["pipeline", "inline"])
def test_a_failed_sync_records_nothing_and_says_what_happens_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipeline_rows: str
) -> None:
    from engine.errors import CadenceError

    monkeypatch.setenv("CADENCE_PIPELINE_ROWS", pipeline_rows)
    monkeypatch.setenv("CADENCE_WORKERS", "1")
    db = _launched(tmp_path, 3)
    box = OutboxTransport(tmp_path / "out")
    box._syncfs = None  # the per-file fsync path, which this test can make fail

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(CadenceError) as caught:
        _run(db, box, batch=3)
    assert "cannot make the emails just written to outbox" in str(caught.value)
    assert "Input/output error" in str(caught.value) and "cadence resolve" in (
        caught.value.hint or ""
    )
    with SqliteStore(db) as store:
        # Handed over, never recorded: `sending`, then unknown once the lease ends.
        assert {store.step_runs(e)[0].state for e in (1, 2, 3)} == {"sending"}


def test_a_zombie_writer_counts_as_gone() -> None:
    from engine.transports.outbox import _alive

    child = subprocess.Popen(["true"])
    deadline = time.time() + 10
    while _alive(child.pid) and time.time() < deadline:  # exited, not yet reaped: a zombie
        time.sleep(0.01)
    assert not _alive(child.pid) and child.poll() == 0
    assert _alive(os.getpid())
