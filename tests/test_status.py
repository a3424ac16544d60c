"""`cadence status` / `resolve`, `run` flags, and the outbox and message details."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.delivery import build_message, message_id
from tests.helpers.mail import stepless_cadence
from tests.helpers.runner_env import cadence_cmd, write_cadence, write_contacts


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENCE_DB", str(tmp_path / "state.db"))
    monkeypatch.setenv("CADENCE_TRANSPORT", f"outbox:{tmp_path / 'outbox'}")


def _cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cadence, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_status_json_counts(tmp_path: Path) -> None:
    assert "nothing launched yet" in _cli("status")
    _cli(
        "launch", str(write_cadence(tmp_path)), "--contacts", str(write_contacts(tmp_path, 3)),
        "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z",
    )  # fmt: skip
    before = json.loads(_cli("status", "-f", "json", "--now", "2026-03-02T10:00Z"))
    (c,) = before["cadences"]
    assert (c["enrolled"], c["active"], c["due"], c["sent"]) == (3, 3, 3, 0)
    _cli("run", "--once", "--now", "2026-03-02T10:00Z")
    after = json.loads(_cli("status", "-f", "json"))
    (c,) = after["cadences"]
    assert (c["sent"], c["finished"]["completed"], c["active"]) == (3, 3, 0)
    assert after["unknown_sends"] == []


def test_resolve_needs_an_unknown_send(tmp_path: Path) -> None:
    _cli("resolve", "1", code=2)
    _cli("resolve", "abc", "--sent", code=2)


@pytest.mark.parametrize(
    "flags", [[], ["--sent", "--resend"], ["--resend", "--sent"]], ids=["none", "both", "both-rev"]
)
def test_resolve_takes_exactly_one_outcome(flags: list[str]) -> None:
    result = CliRunner().invoke(cadence, ["resolve", "1", *flags])
    assert result.exit_code == 2
    assert "give exactly one of --sent and --resend" in result.output


def test_run_json_reports_the_start_instant_in_whole_seconds(tmp_path: Path) -> None:
    out = json.loads(_cli("run", "--once", "--now", "2026-03-02T10:00Z", "-f", "json"))
    assert out["at"] == "2026-03-02T10:00:00+00:00"


def test_run_flags_are_checked() -> None:
    _cli("run", code=2)
    _cli("run", "--once", "--every", "* * * * *", code=2)
    _cli("run", "--every", "every minute", code=2)


def test_run_every_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "CADENCE_DB": str(tmp_path / "state.db")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cadence_engine.cli", "run", "--every", "* * * * *"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # `run --every` runs a pass at once and prints when the next one is: once that line is
    # out, its signal handlers are in place (a fixed sleep raced a slow start).
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped by a signal" in err and "next pass" not in out


def test_message_ids_are_deterministic_and_header_safe() -> None:
    a = message_id("C", "uid-1", "intro", "dana@acme.example")
    assert a == message_id("C", "uid-1", "intro", "dana@acme.example")
    assert a != message_id("C", "uid-1", "bump", "dana@acme.example")
    assert a.endswith("@acme.example>")
    out = build_message(
        cadence=stepless_cadence(),
        to_name="Zoë\r\nBcc: x@evil.example",
        to_email="zoe@globex.example",
        subject="Héllo\nX-Evil: 1",
        text="Grüße\n",
        msg_id=a,
        references=[],
        date=datetime(2026, 3, 2, tzinfo=UTC),
        unsubscribe="mailto:dana@acme.example?subject=unsubscribe",
    )
    head = out.data.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in head and b"\nX-Evil:" not in head
    assert all(line[:1] in b" \t" or b":" in line for line in head.split(b"\r\n"))


def _no_empty_path(fd: int, path: bytes) -> int:
    """`linkat(AT_EMPTY_PATH)` as a kernel before 6.10 answers a process without
    CAP_DAC_READ_SEARCH."""
    ctypes.set_errno(errno.ENOENT)
    return 0


@pytest.mark.parametrize("path", ["unnamed", "no-empty-path", "renameat2", "link-unlink"])
def test_outbox_keeps_duplicates_visible(tmp_path: Path, path: str) -> None:
    from cadence_engine.engine.transports import Envelope
    from cadence_engine.engine.transports.outbox import OutboxTransport

    box = OutboxTransport(tmp_path / "box")
    assert box._linkat is not None and box._renameat2 is not None  # Linux, this kernel
    if path == "no-empty-path":
        box._linkat = _no_empty_path
    if path in ("renameat2", "link-unlink"):
        box._linkat = None  # no O_TMPFILE: the hidden file and its rename
    if path == "link-unlink":
        box._renameat2 = None  # the fallback where Linux or the file system lacks it
    (tmp_path / "box").mkdir()
    stale = tmp_path / "box" / f".tmp-{os.getpid()}-id1@x.example"
    stale.write_bytes(b"left by a crashed run")
    env = Envelope("a@x.example", "b@x.example", "<id1@x.example>")
    assert box.send_many([(env, b"one"), (env, b"two")]) == [
        "written id1@x.example.eml",
        "written id1@x.example.2.eml",
    ]
    box.flush()
    # A hidden file of the same name (a crash's, younger than an hour) is overwritten and
    # moved by the hidden-file path; the unnamed path leaves it to the hour-old sweep.
    left = [stale.name] if path == "unnamed" else []
    assert sorted(p.name for p in (tmp_path / "box").iterdir()) == [
        *left,
        "id1@x.example.2.eml",
        "id1@x.example.eml",
    ]
    assert (tmp_path / "box" / "id1@x.example.eml").read_bytes() == b"one"
    assert (tmp_path / "box" / "id1@x.example.2.eml").read_bytes() == b"two"
    assert (box._linkat is None) == (path != "unnamed")  # a refusal is not asked again


def test_outbox_writes_only_what_ready_allows(tmp_path: Path) -> None:
    from cadence_engine.engine.transports import Envelope, Withheld
    from cadence_engine.engine.transports.outbox import OutboxTransport

    box = OutboxTransport(tmp_path / "box")
    order: list[str] = []

    def ready() -> list[int]:
        order.append(f"ready with {len(list((tmp_path / 'box').glob('*')))} file(s)")
        return [1]

    envelopes = [Envelope("a@x.example", "b@x.example", f"<id{i}@x.example>") for i in range(3)]
    results = box.send_many([(e, b"body") for e in envelopes], ready)
    box.flush()
    assert order == ["ready with 0 file(s)"]  # before anything is handed over
    assert isinstance(results[0], Withheld) and isinstance(results[2], Withheld)
    assert results[1] == "written id1@x.example.eml"
    assert [p.name for p in (tmp_path / "box").iterdir()] == ["id1@x.example.eml"]


def test_postgres_db_is_a_usage_error() -> None:
    result = cadence_cmd("status", env={"CADENCE_DB": "postgresql://db/cadence"})
    assert result.returncode == 2 and "postgresql" in result.stderr


def test_run_shows_progress_on_a_terminal_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cadence_engine import cli

    _cli(
        "launch", str(write_cadence(tmp_path)), "--contacts", str(write_contacts(tmp_path, 30)),
        "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z",
    )  # fmt: skip
    args = ["run", "--once", "--batch", "7", "--now", "2026-03-02T10:00Z"]
    monkeypatch.setattr(cli, "_stderr_is_tty", lambda: True)
    result = CliRunner().invoke(cadence, args, catch_exceptions=False)
    assert result.exit_code == 0
    assert "running" in result.stderr and "running" not in result.stdout
    assert "sent 30" in result.stdout
    monkeypatch.setattr(cli, "_stderr_is_tty", lambda: False)
    result = CliRunner().invoke(cadence, args, catch_exceptions=False)
    assert result.stderr == "" and "nothing due" in result.stdout


def test_run_progress_bar_follows_the_runner(tmp_path: Path) -> None:
    from cadence_engine.cli import _RunProgress
    from cadence_engine.engine.run.loop import RunReport

    class NoStatus:
        def status(self, now: int) -> list[object]:
            return []

    class Clock:
        def seconds(self) -> int:
            return 0

    progress = _RunProgress(NoStatus(), Clock())
    report = RunReport()
    progress(report)
    report.handled = 5  # more than status predicted: the bar grows instead of overflowing
    progress._last = 0.0
    progress(report)
    assert progress._bar.length == 5 and progress._bar.pos == 5
    progress.close()
    assert progress._bar is None
