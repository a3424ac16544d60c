"""Runner defects new users found (issue 9, item 6), each stated as the behaviour now."""

from __future__ import annotations

import array
import fcntl
import json
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from tests.test_tasks import TASKS, _cli, _launch, _open_manual_email_task, _rows


def _messages(world: Path) -> dict[str, object]:
    """Outbox messages by step: the part of the Message-ID before the first dot names it."""
    out: dict[str, object] = {}
    for path in (world / "outbox").iterdir():
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        out[str(msg["Subject"])] = msg
    return out


def test_a_follow_up_whose_email_was_never_sent_starts_a_new_thread(
    world: Path,
) -> None:
    task = _open_manual_email_task()
    _cli("tasks", "skip", task, "--now", "2026-03-04T11:00Z")  # the manual email never goes
    _cli("run", "--once", "--now", "2026-03-05T16:00Z")
    msgs = _messages(world)
    assert set(msgs) == {"Intro for Northwind", "Personal note"}  # no "Re: Personal note"
    bump = msgs["Personal note"]
    assert bump["In-Reply-To"] is None and bump["References"] is None  # type: ignore[index]
    text = bump.get_content()  # type: ignore[attr-defined]
    assert "Bump body." in text and "wrote:" not in text and ">" not in text


def test_a_follow_up_replies_to_the_subject_the_rep_sent(world: Path) -> None:
    task = _open_manual_email_task()
    edit = world / "edit.txt"
    edit.write_text("Hi Ava, my own words.\n")
    _cli(
        "tasks", "send", task, "--body-file", str(edit), "--subject", "Our chat on Tuesday",
        "--now", "2026-03-04T15:30Z",
    )  # fmt: skip
    _cli("run", "--once", "--now", "2026-03-05T16:00Z")
    msgs = _messages(world)
    bump = msgs["Re: Our chat on Tuesday"]
    assert bump["In-Reply-To"] is not None  # type: ignore[index]
    text = bump.get_content()  # type: ignore[attr-defined]
    assert "> Template text of the manual email." in text and "my own words" not in text


LATE = """\
cadence: 1
name: Late
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC, send_window: {start: "08:00", end: "18:00"}}
templates:
  t: {subject: "Hello", body: "Body\\n"}
steps:
  - {id: a, day: 1, email: {template: t, send: {at: "09:00"}}}
  - {id: b, day: 2, email: {template: t, send: same_time_as_previous}}
"""


def test_r4_after_a_late_run_uses_the_time_the_email_really_went_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _launch(tmp_path, monkeypatch, LATE)
    _cli("run", "--once", "--now", "2026-03-02T15:20Z")  # a back-fill: six hours late
    rows = _rows(world)
    assert rows["a"][0] == "sent"
    assert rows["b"][1].isoformat() == "2026-03-03T15:20:00+00:00"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return _launch(tmp_path, monkeypatch, TASKS)


def test_reply_without_cadence_ends_active_enrolments_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = LATE.replace("name: Late", "name: Done").replace(
        "  - {id: b, day: 2, email: {template: t, send: same_time_as_previous}}\n", ""
    )
    world = _launch(tmp_path, monkeypatch, one)
    _cli("run", "--once", "--now", "2026-03-02T10:00Z")  # its one email: completed
    _cli(
        "launch", str(world / "cadence.yaml"), "--contacts", str(world / "contacts.csv"),
        "--now", "2026-03-02T11:00Z", "--start", "2026-03-03T08:00Z",
    )  # fmt: skip  # enrolled again, active
    out = _cli("event", "reply", "--contact", "ava@northwind.example", "--now", "2026-03-02T12:00Z")
    assert "1 enrolment(s) ended" in out
    states = [e["state"] for e in json.loads(_cli("enrolments", "list", "-f", "json"))]
    assert states == ["completed", "replied"]  # the completed one is not rewritten


def test_tasks_show_and_send_say_what_a_task_is_now(world: Path) -> None:
    task = _open_manual_email_task()
    assert "--at 2026-03-04 09:00 UTC is in the past" in _cli(
        "tasks", "send", task, "--body-file", "/dev/null", "--at", "2026-03-04T09:00Z",
        "--now", "2026-03-04T10:00Z", code=2,
    )  # fmt: skip
    edit = world / "edit.txt"
    edit.write_text("Later.\n")
    _cli(
        "tasks", "send", task, "--body-file", str(edit), "--at", "2026-03-05T17:00Z",
        "--now", "2026-03-04T10:30Z",
    )  # fmt: skip
    again = _cli("tasks", "send", task, "--body-file", str(edit), code=2)
    assert "already scheduled to be sent at 2026-03-05 17:00 UTC" in again
    shown = _cli("tasks", "show", task)
    assert "State:   planned" in shown and "mailto:" not in shown
    call = _cli("tasks", "list", "--type", "call", "-f", "json")
    assert json.loads(call) == []
    assert "no task 9999" in _cli("tasks", "show", "9999", code=1)


def test_one_email_check_for_lists_and_contact(world: Path) -> None:
    assert "not an email address" in _cli("event", "reply", "--contact", "a@b", code=2)
    assert "not an email address" in _cli("enrolments", "list", "--contact", "a@b", code=2)


def _immutable(folder: Path, on: bool) -> bool:
    """chattr +i / -i: even root cannot create files in an immutable folder."""
    flags = array.array("l", [0])
    fd = __import__("os").open(folder, __import__("os").O_RDONLY)
    try:
        fcntl.ioctl(fd, 0x80086601, flags, True)  # FS_IOC_GETFLAGS
        flags[0] = flags[0] | 0x10 if on else flags[0] & ~0x10  # FS_IMMUTABLE_FL
        fcntl.ioctl(fd, 0x40086602, flags, True)  # FS_IOC_SETFLAGS
    except OSError:
        return False
    finally:
        __import__("os").close(fd)
    return True


def test_an_outbox_that_cannot_be_written_gives_every_row_back_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _launch(tmp_path, monkeypatch, LATE)
    outbox = world / "outbox"
    outbox.mkdir()
    if not _immutable(outbox, True):
        pytest.skip("needs chattr +i on the test folder (ext4 and CAP_LINUX_IMMUTABLE)")
    try:
        out = _cli("run", "--once", "--now", "2026-03-02T10:00Z", code=2)  # a setting to fix
    finally:
        _immutable(outbox, False)
    assert "cannot write to outbox" in out and "due again at once" in out
    assert "make the folder writable" in out
    status = json.loads(_cli("status", "-f", "json", "--now", "2026-03-02T10:00Z"))
    (c,) = status["cadences"]
    assert (c["due"], c["unknown"], c["sent"]) == (1, 0, 0) and status["unknown_sends"] == []
    assert "sent 1" in _cli("run", "--once", "--now", "2026-03-02T10:00Z")


def test_an_outbox_on_a_full_disk_is_a_failure_that_may_pass(tmp_path: Path) -> None:
    import subprocess

    from tests.helpers.runner_env import cadence_cmd, write_cadence, write_contacts

    outbox = tmp_path / "small"
    outbox.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(outbox)],
                      capture_output=True).returncode:  # fmt: skip
        pytest.skip("needs to mount a small tmpfs (root)")
    try:
        env = {"CADENCE_DB": str(tmp_path / "s.db"), "CADENCE_TRANSPORT": f"outbox:{outbox}"}
        contacts = str(write_contacts(tmp_path, 200))
        launched = cadence_cmd(
            "launch", str(write_cadence(tmp_path)), "--contacts", contacts,
            "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z", env=env,
        )  # fmt: skip
        assert launched.returncode == 0, launched.stderr
        run = cadence_cmd("run", "--once", "--now", "2026-03-02T10:00Z", "-f", "json", env=env)
        written = len(list(outbox.glob("*.eml")))
    finally:
        subprocess.run(["umount", str(outbox)], check=True)
    assert run.returncode == 1, run.stderr  # not a usage error: space may be freed
    assert "cannot write to outbox" in run.stderr and "free space on its disk" in run.stderr
    assert "as is everything else still due" in run.stderr
    assert 0 < written < 200
    status = cadence_cmd("status", "-f", "json", "--now", "2026-03-02T10:00Z", env=env)
    (c,) = json.loads(status.stdout)["cadences"]
    assert (c["sent"], c["due"], c["unknown"]) == (written, 200 - written, 0)


MID_RUN = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from tests.test_run_defects import _immutable
from tests.helpers.runner_env import write_cadence, write_contacts
from cadence_engine.engine.errors import CadenceError
from cadence_engine.engine.launch import launch
from cadence_engine.engine.run.clock import Clock
from cadence_engine.engine.run.loop import Runner
from cadence_engine.engine.store import open_store
from cadence_engine.engine.transports.outbox import OutboxTransport

folder = Path(sys.argv[1])
with open_store(str(folder / "s.db")) as store:
    launch(store, write_cadence(folder), write_contacts(folder, 3),
           now=datetime(2026, 3, 2, 8, tzinfo=UTC), start="now")
    files = sorted(folder.glob("s.db*"))  # the -wal and -shm of this open store too
    if not all(_immutable(f, True) for f in files):
        sys.exit(77)
    try:
        Runner(store, OutboxTransport(folder / "o"),
               clock=Clock(datetime(2026, 3, 2, 10, tzinfo=UTC))).run_once()
    except CadenceError as exc:
        print(f"exit {exc.exit_code}: {exc}")
"""


def test_a_store_that_turns_read_only_mid_run_is_a_clear_error_not_a_crash(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from tests.helpers.runner_env import ROOT

    try:
        done = subprocess.run(
            [sys.executable, "-c", MID_RUN, str(tmp_path)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        for f in tmp_path.glob("s.db*"):
            _immutable(f, False)
    if done.returncode == 77:
        pytest.skip("needs chattr +i on the test folder (ext4 and CAP_LINUX_IMMUTABLE)")
    assert done.returncode == 0, (done.returncode, done.stderr)  # -7 would be a SIGBUS
    assert "exit 2: cannot write to state store" in done.stdout
    assert "is no longer writable" in done.stdout


CHAIN = """\
cadence: 1
name: Chain
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  intro: {subject: "Intro for {{ contact.company }}", body: "Intro body."}
  bump: {body: "Bump body."}
  last: {body: "Last body."}
steps:
  - {id: intro, day: 1, email: {template: intro, send: {at: "09:00"}}}
  - {id: bump, day: 2, email: {template: bump, send: {at: "10:00"}, follow_up: true}}
  - {id: last, day: 3, email: {template: last, send: {at: "11:00"}, follow_up: true}}
"""


def test_every_quoted_level_of_a_follow_up_chain_is_dated_with_its_real_send_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    world = _launch(tmp_path, monkeypatch, CHAIN, store_url)
    # Each run is late, so every real send time differs from the planned one.
    _cli("run", "--once", "--now", "2026-03-02T09:41Z")
    _cli("run", "--once", "--now", "2026-03-03T10:17Z")
    _cli("run", "--once", "--now", "2026-03-04T11:05Z")
    assert len(list((world / "outbox").iterdir())) == 3
    texts = [
        m.get_content().replace("\r\n", "\n")  # type: ignore[attr-defined]
        for path in (world / "outbox").iterdir()
        if "Last body."
        in (m := message_from_bytes(path.read_bytes(), policy=policy.default)).get_content()  # type: ignore[attr-defined]
    ]
    (last,) = texts
    assert last == (
        "Last body.\n\n"
        "On Tue, 03 Mar 2026 at 10:17, Dana Reyes <dana@acme.example> wrote:\n"
        "> Bump body.\n"
        ">\n"
        "> On Mon, 02 Mar 2026 at 09:41, Dana Reyes <dana@acme.example> wrote:\n"
        "> > Intro body.\n"
    )
