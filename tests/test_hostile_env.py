"""Hostile environments: a bad state store, transport or setting is a clear message with
its exit code (1 failure, 2 usage), never an internal error (3) or a traceback."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cadence_engine.cli import cadence
from tests.conftest import CADENCES

LAUNCH = [
    "launch",
    str(CADENCES / "heads-of-platform.yaml"),
    "--contacts",
    str(CADENCES / "contacts.csv"),
    "--send-at",
    "09:00",
    "--now",
    "2026-03-02T08:00Z",
]
RUN = ["run", "--once", "--now", "2026-03-05T10:00Z"]


def invoke(args: list[str], db: Path | str, tmp_path: Path) -> Result:
    env = {"CADENCE_DB": str(db), "CADENCE_TRANSPORT": f"outbox:{tmp_path / 'out'}"}
    return CliRunner().invoke(cadence, args, env=env)


def assert_clear(result: Result, code: int, *says: str) -> None:
    assert result.exit_code == code, result.output
    assert "internal error" not in result.output and "Traceback" not in result.output
    for text in says:
        assert text in result.output, result.output


@pytest.fixture
def launched(tmp_path: Path) -> Path:
    db = tmp_path / "state.db"
    assert invoke(LAUNCH, db, tmp_path).exit_code == 0
    return db


def test_a_text_file_as_the_store_is_a_usage_error(tmp_path: Path) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("hello\n" * 200)
    assert_clear(invoke(["status"], db, tmp_path), 2, "is not a cadence state store", "hint:")


def test_a_folder_as_the_store_says_so(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.mkdir()
    assert_clear(invoke(["status"], db, tmp_path), 2, "it is a folder", "CADENCE_DB")


def test_a_store_in_a_missing_folder_names_the_folder(tmp_path: Path) -> None:
    db = tmp_path / "nope" / "state.db"
    assert_clear(invoke(["status"], db, tmp_path), 2, f"its folder {db.parent} does not exist")


def test_a_damaged_store_is_a_failure_not_a_bug(launched: Path, tmp_path: Path) -> None:
    with launched.open("r+b") as f:  # keep the header, wreck the tables' pages
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096 * 2)
    for args in (["status"], RUN):
        assert_clear(invoke(args, launched, tmp_path), 1, "is damaged", ".recover")


def test_a_read_only_store_is_a_usage_error(launched: Path, tmp_path: Path) -> None:
    import subprocess

    # chattr +i: refused even to root (an immutable file, like a read-only mount).
    if subprocess.run(["chattr", "+i", str(launched)], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        result = invoke(RUN, launched, tmp_path)
    finally:
        subprocess.run(["chattr", "-i", str(launched)], check=True)
    assert_clear(result, 2, "is read-only", "writable")


def test_a_store_locked_past_the_busy_timeout(
    launched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cadence_engine.engine.store.sqlite.BUSY_TIMEOUT_MS", 200)
    holder = sqlite3.connect(launched, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = invoke(RUN, launched, tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_clear(result, 1, "is locked", "another cadence command", "fuser")
    # Nothing was half-done: the next run sends everything that was due.
    again = invoke(
        ["run", "--once", "--now", "2026-03-05T10:00Z", "-f", "json"], launched, tmp_path
    )
    assert again.exit_code == 0 and '"unknown": 0' in again.output, again.output
    assert '"sent": 0' not in again.output, again.output


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CADENCE_SMTP_TIMEOUT": "abc"}, "CADENCE_SMTP_TIMEOUT='abc' is not a number"),
        ({"CADENCE_SMTP_TIMEOUT": "-1"}, "CADENCE_SMTP_TIMEOUT='-1' is not a number"),
        ({"CADENCE_SMTP_TIMEOUT": "0"}, "CADENCE_SMTP_TIMEOUT='0' is not a number"),
        ({"CADENCE_SMTP_CAFILE": "/nonexistent/ca.pem"}, "cannot load it as a CA certificate"),
    ],
    ids=["timeout-text", "timeout-negative", "timeout-zero", "cafile-missing"],
)
def test_bad_smtp_settings_are_usage_errors_before_any_claim(
    launched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(
        cadence, [*RUN, "--db", str(launched), "--transport", "smtp://127.0.0.1:1"]
    )
    assert_clear(result, 2, says, "hint:")
    # Nothing was claimed or delayed: with the outbox, everything due goes out now.
    monkeypatch.undo()
    again = invoke([*RUN, "-f", "json"], launched, tmp_path)
    assert again.exit_code == 0 and '"retried": 0' in again.output, again.output
    assert '"sent": 0' not in again.output, again.output


def test_a_refused_smtp_connection_says_what_happens_next(launched: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cadence, [*RUN, "--db", str(launched), "--transport", "smtp://127.0.0.1:1"]
    )
    assert_clear(result, 1, "transport unavailable", "nothing was sent", "due again")


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "--start", "9999-12-31T23:59Z"],
        ["plan", "--start", "0001-01-01T00:00Z"],
        ["plan", "--send-at", "9999-12-31T10:00"],
        ["launch", "--now", "9999-12-31T23:00Z"],
    ],
    ids=["start-max", "start-min", "send-at-max", "launch-now-max"],
)
def test_a_when_at_the_end_of_time_is_a_usage_error(args: list[str], tmp_path: Path) -> None:
    command, *options = args
    cli_args = [
        command,
        str(CADENCES / "heads-of-platform.yaml"),
        "--contacts",
        str(CADENCES / "contacts.csv"),
        "--send-at",
        "09:00",
        *options,
    ]
    assert_clear(invoke(cli_args, tmp_path / "s.db", tmp_path), 2, "out of range", "1900 to 9000")


def test_run_now_at_the_end_of_time_is_a_usage_error(launched: Path, tmp_path: Path) -> None:
    result = invoke(["run", "--once", "--now", "9999-12-31T23:00Z"], launched, tmp_path)
    assert_clear(result, 2, "--now", "out of range")


def test_a_cron_expression_that_never_fires_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke(["run", "--every", "0 0 30 2 *"], tmp_path / "s.db", tmp_path)
    assert_clear(result, 2, "never fires", "hint:")


@pytest.mark.parametrize("signal_name", ["TERM", "INT"])
def test_a_signal_during_run_once_stops_cleanly(tmp_path: Path, signal_name: str) -> None:
    from tests.helpers.runner_env import cadence_cmd, write_cadence, write_contacts

    db, out = tmp_path / "s.db", tmp_path / "out"
    env = {
        "CADENCE_DB": str(db),
        "CADENCE_TRANSPORT": f"outbox:{out}",
    }
    launch = [
        "launch",
        str(write_cadence(tmp_path)),
        "--contacts",
        str(write_contacts(tmp_path, 20)),
        "--now",
        "2026-03-02T08:00Z",
    ]
    assert cadence_cmd(*launch, env=env).returncode == 0
    run = ["run", "--once", "--now", "2026-03-02T10:00Z", "--batch", "5", "-f", "json"]
    # The signal arrives after the second batch's `sending` commit.
    fault = {"CADENCE_FAULT": "after-sending-commit", "CADENCE_FAULT_AFTER": "1"}
    stopped = cadence_cmd(*run, env={**env, **fault, "CADENCE_FAULT_SIGNAL": signal_name})
    assert stopped.returncode == 0, stopped.stderr
    assert "Traceback" not in stopped.stderr and "stopped by a signal" in stopped.stderr
    # The first batch went out; the second, already `sending`, is released untouched.
    assert '"sent": 5' in stopped.stdout, stopped.stdout
    with closing(sqlite3.connect(db)) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM step_runs GROUP BY 1"))
    assert states == {"sent": 5, "planned": 15}  # nothing left claimed or `sending`
    rest = cadence_cmd(*run, env=env)
    assert rest.returncode == 0 and '"sent": 15' in rest.stdout, rest.stdout
    assert len(list(out.iterdir())) == 20


EMAIL_TASK = """\
cadence: 1
name: Email task
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  t: {subject: "Hello", body: "Hi there\\n"}
steps:
  - {id: a, day: 1, email: {template: t, send: task, at: "09:00"}}
"""


@pytest.fixture
def open_email_task(tmp_path: Path) -> tuple[Path, str]:
    cadence_file = tmp_path / "task.yaml"
    cadence_file.write_text(EMAIL_TASK, encoding="utf-8")
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("email\nava@northwind.example\n", encoding="utf-8")
    db = tmp_path / "s.db"
    launch = [
        "launch",
        str(cadence_file),
        "--contacts",
        str(contacts),
        "--now",
        "2026-03-02T08:00Z",
    ]
    assert invoke(launch, db, tmp_path).exit_code == 0
    assert invoke(["run", "--once", "--now", "2026-03-02T10:00Z"], db, tmp_path).exit_code == 0
    listed = invoke(["tasks", "list", "-f", "json"], db, tmp_path)
    return db, str(json.loads(listed.output)[0]["id"])


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\xb3\x00binary", "not UTF-8 text (byte 0xB3 at offset 0)"),
        (b"  \n\n", "the email body is empty; nothing was sent"),
    ],
    ids=["binary", "blank"],
)
def test_a_bad_body_file_is_refused_and_the_task_stays_open(
    open_email_task: tuple[Path, str], tmp_path: Path, content: bytes, says: str
) -> None:
    db, task = open_email_task
    body = tmp_path / "body.txt"
    body.write_bytes(content)
    result = invoke(["tasks", "send", task, "--body-file", str(body)], db, tmp_path)
    assert_clear(result, 2, says, "hint:")
    assert '"state": "open"' in invoke(["tasks", "show", task, "-f", "json"], db, tmp_path).output


def test_a_body_piped_on_standard_input_is_sent(
    open_email_task: tuple[Path, str], tmp_path: Path
) -> None:
    db, task = open_email_task
    env = {"CADENCE_DB": str(db), "CADENCE_TRANSPORT": f"outbox:{tmp_path / 'out'}"}
    send = ["tasks", "send", task, "--body-file", "-"]
    refused = CliRunner().invoke(cadence, send, env=env, input=b"Hi\n\xff")
    assert_clear(refused, 2, "--body-file -:2: not UTF-8 text (byte 0xFF at offset 3)")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    piped = b"Hi Ava,\n\nWritten by a script, sent as is.\n"
    assert_clear(CliRunner().invoke(cadence, send, env=env, input=piped), 0, f"task {task} sent")
    (sent,) = (tmp_path / "out").glob("*.eml")
    assert "Written by a script, sent as is." in sent.read_text(encoding="utf-8")


@pytest.mark.parametrize("editor", ["false", "/nonexistent/editor"])
def test_a_failing_editor_is_a_usage_error_with_a_way_out(
    open_email_task: tuple[Path, str], tmp_path: Path, editor: str
) -> None:
    db, task = open_email_task
    env = {"CADENCE_DB": str(db), "EDITOR": editor, "VISUAL": editor}
    result = CliRunner().invoke(cadence, ["tasks", "send", task], env=env)
    assert_clear(result, 2, "the editor failed", "--body-file")


def test_an_outbox_that_is_a_file_says_to_point_it_at_a_folder(tmp_path: Path) -> None:
    from tests.helpers.runner_env import write_cadence, write_contacts

    db = str(tmp_path / "state.db")
    when = ["--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z"]
    contacts = str(write_contacts(tmp_path, 3))
    launched = CliRunner().invoke(
        cadence, ["launch", str(write_cadence(tmp_path)), "--contacts", contacts, "--db", db, *when]
    )
    assert launched.exit_code == 0, launched.output
    blocker = tmp_path / "outbox-file"
    blocker.write_text("not a folder", encoding="utf-8")
    transport = f"outbox:{blocker}"
    result = CliRunner().invoke(
        cadence,
        ["run", "--once", "--db", db, "--transport", transport, "--now", "2026-03-02T10:00Z"],
    )
    assert result.exit_code == 2, result.output
    assert f"cannot create outbox {blocker}" in result.output
    assert "point outbox:DIR" in result.output and "Traceback" not in result.output
    # Nothing was handed over: the emails are released, due again at once, none unknown.
    status = CliRunner().invoke(
        cadence, ["status", "--db", db, "-f", "json", "--now", "2026-03-02T10:00Z"]
    )
    shown = json.loads(status.output)
    (row,) = shown["cadences"]
    assert (row["due"], row["sent"], shown["unknown_sends"]) == (3, 0, [])
    # `run --every` stops on it too (exit 2): waiting for the next fire time mends nothing.
    # (A failure that may pass, such as a server that is down, is tried again instead.)
    from tests.helpers.runner_env import cadence_cmd

    looped = cadence_cmd(
        "run", "--every", "* * * * *", "--db", db, "--transport", transport, timeout=60
    )
    assert looped.returncode == 2, looped.stdout + looped.stderr
    assert f"cannot create outbox {blocker}" in looped.stderr and "next pass" not in looped.stdout


def test_sigterm_to_the_whole_group_mid_run_stops_without_hanging(tmp_path: Path) -> None:
    """As `systemctl stop` does: the runner gives back what it had not handed over and
    exits; nothing is left claimed or `sending`."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers.runner_env import cadence_cmd, write_cadence, write_contacts

    db, out = tmp_path / "s.db", tmp_path / "out"
    env = {
        **os.environ,
        "CADENCE_DB": str(db),
        "CADENCE_TRANSPORT": f"outbox:{out}",
    }
    env.pop("CADENCE_FAULT", None)
    contacts = str(write_contacts(tmp_path, 3000))
    when = ["--now", "2026-03-02T08:00Z"]
    launched = cadence_cmd(
        "launch", str(write_cadence(tmp_path)), "--contacts", contacts, *when, env=env
    )
    assert launched.returncode == 0, launched.stderr
    run = [sys.executable, "-m", "cadence_engine.cli", "run", "--once", "--batch", "50"]
    proc = subprocess.Popen(
        [*run, "--now", "2026-03-02T10:00Z", "-f", "json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    while not out.exists() or not any(out.glob("*.eml")):  # well into the run
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    with closing(sqlite3.connect(db)) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM step_runs GROUP BY 1"))
    assert set(states) <= {"sent", "planned"}, states
    assert states.get("sent", 0) == json.loads(stdout)["sent"] == len(list(out.glob("*.eml")))
