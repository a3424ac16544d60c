"""Tasks (R5, R6): an open task holds later steps, late completion shifts them, an email
task goes out with the rep's edits while the next follow-up quotes the template (R3, R4)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.store import open_store
from tests.helpers.runner_env import write_cadence

TASKS = """\
cadence: 1
name: Tasks
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  intro: {subject: "Intro for {{ contact.company }}", body: "Intro body.\\n"}
  manual: {subject: "Personal note", body: "Template text of the manual email.\\n"}
  bump: {body: "Bump body.\\n"}
  final: {subject: "Final", body: "Final body.\\n"}
steps:
  - {id: intro, day: 1, email: {template: intro, send: {at: "09:00"}}}
  - {id: call, day: 2, call: {notes: "Call {{ contact.first_name }}"}}
  - {id: manual, day: 3, email: {template: manual, send: task}}
  - {id: bump, day: 4, email: {template: bump, send: same_time_as_previous, follow_up: true}}
  - {id: final, day: 6, email: {template: final, send: {at: "09:00"}}}
"""


def _cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cadence, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str) -> Path:
    return _launch(tmp_path, monkeypatch, TASKS, store_url)  # SQLite, then PostgreSQL


def _launch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, db: str | None = None
) -> Path:
    """A fresh store and outbox in `tmp_path`, Ava launched on Mon 2 March 2026 08:00Z."""
    monkeypatch.setenv("CADENCE_DB", db or str(tmp_path / "state.db"))
    monkeypatch.setenv("CADENCE_TRANSPORT", f"outbox:{tmp_path / 'outbox'}")
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("email,first_name,company\nava@northwind.example,Ava,Northwind\n")
    _cli(
        "launch", str(write_cadence(tmp_path, text)), "--contacts", str(contacts),
        "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z",
    )  # fmt: skip
    return tmp_path


def _rows(world: Path) -> dict[str, tuple[str, datetime]]:
    with open_store(os.environ["CADENCE_DB"]) as store:
        return {
            r.step_id: (r.state, datetime.fromtimestamp(r.due_utc, UTC)) for r in store.step_runs(1)
        }


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _run_intro_then_call() -> None:
    """Day 1's intro goes out on time (03-02), then day 2's call opens (03-03)."""
    _cli("run", "--once", "--now", "2026-03-02T10:00Z")
    _cli("run", "--once", "--now", "2026-03-03T10:00Z")


def _first_task_id() -> str:
    """The id of the first task `tasks list` shows."""
    return _cli("tasks", "list").split("\n")[1].split()[0]


def _open_manual_email_task() -> str:
    """Intro sent, the call skipped on time, day 3's manual email task open: its id."""
    _run_intro_then_call()
    _cli("tasks", "skip", _first_task_id(), "--now", "2026-03-03T11:00Z")
    _cli("run", "--once", "--now", "2026-03-04T10:00Z")
    return _first_task_id()


def test_an_intro_sent_a_day_late_moves_the_call_instead_of_opening_it_at_once(
    world: Path,
) -> None:
    out = _cli("run", "--once", "--now", "2026-03-03T10:00Z")  # the intro, a day late
    assert "sent 1" in out and "tasks opened" not in out
    rows = _rows(world)
    # The call goes to the next campaign day at its own time; the rest keep their gaps.
    assert rows["call"] == ("planned", _at("2026-03-04T09:00"))
    assert rows["manual"][1] == _at("2026-03-05T09:00")
    assert rows["final"][1] == _at("2026-03-08T09:00")
    assert "tasks opened 1" in _cli("run", "--once", "--now", "2026-03-04T09:00Z")


LATE_CALL = TASKS.replace(
    'call: {notes: "Call {{ contact.first_name }}"}', 'call: {notes: "Call", at: "15:00"}'
)


def test_an_intro_sent_late_on_the_calls_date_moves_the_call_to_the_next_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert LATE_CALL != TASKS
    _launch(tmp_path, monkeypatch, LATE_CALL)
    # The runner was down on day 1: the intro goes out on day 2's date at 10:00, before the
    # call's 15:00. The call would share the intro's date: it goes a campaign day later.
    assert "sent 1" in _cli("run", "--once", "--now", "2026-03-03T10:00Z")
    rows = _rows(tmp_path)
    assert rows["call"] == ("planned", _at("2026-03-04T15:00"))
    assert rows["manual"][1] == _at("2026-03-05T09:00")
    assert "tasks opened" not in _cli("run", "--once", "--now", "2026-03-03T15:30Z")


def test_open_task_holds_and_late_completion_shifts(world: Path) -> None:
    _run_intro_then_call()
    assert _rows(world)["call"][0] == "open"
    listed = _cli("tasks", "list", "--type", "call")
    assert "Call Ava" in listed
    # Two days later the manual email's day has come, but the open call holds it.
    _cli("run", "--once", "--now", "2026-03-05T10:00Z")
    assert _rows(world)["manual"][0] == "planned"
    call_id = listed.split("\n")[1].split()[0]
    _cli("tasks", "done", call_id, "--now", "2026-03-05T12:00Z")
    rows = _rows(world)
    # Due 03-03, done 03-05: two campaign days late; every later step moves by two.
    assert rows["manual"][1] == _at("2026-03-06T09:00")
    assert rows["bump"][1] == _at("2026-03-07T09:00")
    assert rows["final"][1] == _at("2026-03-09T09:00")


def test_email_task_sent_with_edits_and_follow_up_quotes_template(world: Path) -> None:
    _run_intro_then_call()
    listed = _cli("tasks", "list")
    _cli("tasks", "skip", listed.split("\n")[1].split()[0], "--now", "2026-03-03T11:00Z")
    _cli("run", "--once", "--now", "2026-03-04T10:00Z")
    listed = _cli("tasks", "list", "--type", "email", "-f", "table")
    task_id = listed.split("\n")[1].split()[0]
    shown = _cli("tasks", "show", task_id)
    assert "Template text of the manual email." in shown
    assert "https://mail.google.com/mail/?view=cm" in shown
    assert "https://outlook.office.com/mail/deeplink/compose" in shown
    assert "mailto:ava@northwind.example?subject=Personal%20note" in shown
    edit = world / "edit.txt"
    edit.write_text("Hi Ava, a personal edit only you get.\n")
    _cli("tasks", "send", task_id, "--body-file", str(edit), "--now", "2026-03-04T15:30Z")
    # R4: `same_time_as_previous` after a hand-sent email uses its real send time.
    assert _rows(world)["bump"][1] == _at("2026-03-05T15:30")
    _cli("run", "--once", "--now", "2026-03-05T16:00Z")
    messages = {}
    for path in (world / "outbox").iterdir():
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        text = msg.get_content()  # type: ignore[attr-defined]
        messages[str(msg["Subject"])] = text.replace("\r\n", "\n")
    assert messages["Personal note"] == "Hi Ava, a personal edit only you get.\n"
    bump = messages["Re: Personal note"]
    assert "> Template text of the manual email." in bump
    assert "personal edit" not in bump


def test_send_at_schedules_the_email_task(world: Path) -> None:
    task_id = _open_manual_email_task()
    edit = world / "edit.txt"
    edit.write_text("Scheduled text.\n")
    out = _cli(
        "tasks", "send", task_id, "--body-file", str(edit), "--at", "2026-03-04T17:00Z",
        "--now", "2026-03-04T10:30Z",
    )  # fmt: skip
    assert "scheduled" in out
    _cli("run", "--once", "--now", "2026-03-04T16:59Z")
    assert _rows(world)["manual"][0] == "planned"
    _cli("run", "--once", "--now", "2026-03-04T17:00Z")
    assert _rows(world)["manual"][0] == "sent"


def test_tasks_json_and_errors(world: Path) -> None:
    _run_intro_then_call()
    assert '"type": "call task"' in _cli("tasks", "list", "-f", "json")
    assert "no such cadence" in _cli("tasks", "list", "--cadence", "Other", code=2)
    _cli("tasks", "done", "9999", code=1)


def test_status_splits_due_from_held_behind_an_open_task(world: Path) -> None:
    import json

    def counts(now: str) -> tuple[int, int, int]:
        (c,) = json.loads(_cli("status", "-f", "json", "--now", now))["cadences"]
        return c["due"], c["held"], c["open_tasks"]

    # Before any run, on day 5: the intro is due; the rest waits behind it (neither).
    assert counts("2026-03-06T10:00Z") == (1, 0, 0)
    _run_intro_then_call()  # intro sent, call opened
    # The manual email (day 3) and the bump (day 4) have come, but the call holds them.
    assert counts("2026-03-05T10:00Z") == (0, 2, 1)
    text = _cli("status", "--now", "2026-03-05T10:00Z")
    assert "due 0, held 2, open tasks 1" in text
    call_id = _first_task_id()
    _cli("tasks", "skip", call_id, "--now", "2026-03-03T11:00Z")  # on time: nothing moves
    assert counts("2026-03-05T10:00Z") == (1, 0, 0)


def test_a_second_late_task_counts_from_the_shifted_schedule(world: Path) -> None:
    _run_intro_then_call()
    call_id = _first_task_id()
    _cli("tasks", "done", call_id, "--now", "2026-03-05T12:00Z")  # two days late
    assert _rows(world)["manual"][1] == _at("2026-03-06T09:00")
    _cli("run", "--once", "--now", "2026-03-06T10:00Z")
    task_id = _first_task_id()
    # On time for its shifted day: nothing shifts again (R5 counts lateness once).
    _cli("tasks", "done", task_id, "--now", "2026-03-06T12:00Z")
    rows = _rows(world)
    assert rows["bump"][1] == _at("2026-03-07T12:00")  # R4: the email task's real time
    assert rows["final"][1] == _at("2026-03-09T09:00")


def test_skipped_email_task_is_not_a_send_time(world: Path) -> None:
    task_id = _open_manual_email_task()
    _cli("tasks", "skip", task_id, "--now", "2026-03-04T15:30Z")
    assert _rows(world)["bump"][1] == _at("2026-03-05T09:00")  # the plan's time, kept


WEEKDAYS = """\
cadence: 1
name: Weekdays
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: true, default_timezone: UTC}
templates:
  t: {subject: "Hello", body: "Body\\n"}
steps:
  - {id: intro, day: 1, email: {template: t, send: {at: "09:00"}}}
  - {id: call, day: 2, call: {}}
  - {id: mid, day: 3, email: {template: t, send: {at: "10:00"}}}
  - {id: last, day: 5, email: {template: t, send: {at: "11:00"}}}
"""


@pytest.mark.parametrize(
    ("done", "mid", "last"),
    [
        ("2026-03-03T20:00Z", "2026-03-04T10:00", "2026-03-06T11:00"),  # on its day
        ("2026-03-05T12:00Z", "2026-03-06T10:00", "2026-03-10T11:00"),  # 2 business days
        ("2026-03-07T12:00Z", "2026-03-09T10:00", "2026-03-11T11:00"),  # Sat: 3 (Wed-Fri)
        ("2026-03-09T12:00Z", "2026-03-10T10:00", "2026-03-12T11:00"),  # Mon: 4
    ],
    ids=["on-time", "two-late", "saturday", "monday"],
)
def test_late_task_shifts_by_business_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, done: str, mid: str, last: str
) -> None:
    _launch(tmp_path, monkeypatch, WEEKDAYS)
    _run_intro_then_call()
    call_id = _first_task_id()
    _cli("tasks", "done", call_id, "--now", done)
    rows = _rows(tmp_path)
    assert (rows["mid"][1], rows["last"][1]) == (_at(mid), _at(last))
    # No burst: nothing goes out before its shifted time.
    out = _cli("run", "--once", "--now", done)
    assert "sent" not in out


def test_task_commands_on_wrong_ids_are_clear(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    def no_editor(*args: object, **kwargs: object) -> str:
        raise AssertionError("the editor must not open")

    monkeypatch.setattr(click, "edit", no_editor)
    _run_intro_then_call()
    call_id = _first_task_id()
    out = _cli("tasks", "send", call_id, code=2)
    assert "is a call task, not an email task" in out
    _cli("tasks", "done", call_id, "--now", "2026-03-03T11:00Z")
    assert "is not open (it is done)" in _cli("tasks", "skip", call_id, code=2)
    assert "is not open (it is done)" in _cli("tasks", "done", call_id, code=2)
    assert '"state": "done"' in _cli("tasks", "show", call_id, "-f", "json")
    assert "no task 1" in _cli(
        "tasks", "done", "1", code=1
    )  # the intro: an automatic email (NotFound)
    assert "no task 9999" in _cli("tasks", "send", "9999", code=1)
    _cli("run", "--once", "--now", "2026-03-04T10:00Z")
    email_id = _cli("tasks", "list", "--type", "email").split("\n")[1].split()[0]
    _cli("tasks", "skip", email_id, "--now", "2026-03-04T11:00Z")
    assert "is not open (it is skipped)" in _cli("tasks", "send", email_id, code=2)


def test_tasks_list_filters(world: Path) -> None:
    _run_intro_then_call()  # the call (due 03-03 09:00) opens
    assert "Call Ava" in _cli("tasks", "list", "--assignee", "Dana@Acme.example")
    assert "no open tasks" in _cli("tasks", "list", "--assignee", "someone@else.example")
    assert "Call Ava" in _cli("tasks", "list", "--cadence", "Tasks", "--type", "call")
    assert "no open tasks" in _cli("tasks", "list", "--type", "email")
    assert "Call Ava" in _cli("tasks", "list", "--due", "2026-03-03T09:00Z")
    assert "no open tasks" in _cli("tasks", "list", "--due", "2026-03-03T08:59Z")
    assert "--due" in _cli("tasks", "list", "--due", "soon", code=2)
    # A cadence the store never launched is a usage error, as for `event` and `enrolments`,
    # not an empty queue that looks like work done.
    out = _cli("tasks", "list", "--cadence", "Nope", code=2)
    assert "--cadence 'Nope': no such cadence in the state store" in out and "'Tasks'" in out
    assert "no open tasks" not in out


def test_a_transport_failure_keeps_the_reps_text_queued_and_says_so(world: Path) -> None:
    task_id = _open_manual_email_task()
    edit = world / "edit.txt"
    edit.write_text("Queued text.\n")
    blocker = world / "not-a-folder"
    blocker.write_text("x")
    out = _cli(
        "tasks", "send", task_id, "--body-file", str(edit), "--now", "2026-03-04T10:30Z",
        "--transport", f"outbox:{blocker}", code=2,
    )  # fmt: skip
    assert f"task {task_id} is queued with your text" in out
    _cli("run", "--once", "--now", "2026-03-04T10:31Z")
    assert _rows(world)["manual"][0] == "sent"
    sent = [p.read_text() for p in (world / "outbox").iterdir()]
    assert any("Queued text." in text for text in sent)


def test_a_follow_up_of_an_email_task_marked_done_quotes_it_with_the_done_time(
    world: Path,
) -> None:
    task_id = _open_manual_email_task()
    _cli("tasks", "done", task_id, "--now", "2026-03-04T15:30Z")  # sent by the rep elsewhere
    _cli("run", "--once", "--now", "2026-03-05T16:00Z")
    bumps = []
    for path in (world / "outbox").iterdir():
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        if str(msg["Subject"]) == "Re: Personal note":
            bumps.append(msg.get_content().replace("\r\n", "\n"))  # type: ignore[attr-defined]
    (bump,) = bumps
    assert "On Wed, 04 Mar 2026 at 15:30, Dana Reyes <dana@acme.example> wrote:\n" in bump


@pytest.mark.parametrize("command", ["show", "done", "skip", "send"])
def test_a_task_id_past_64_bits_is_a_usage_error(tmp_path: Path, command: str) -> None:
    result = CliRunner().invoke(
        cadence,
        ["tasks", command, "99999999999999999999999", "--db", str(tmp_path / "s.db")],
    )
    assert result.exit_code == 2, result.output
    assert "is not in the range 1<=x<=9223372036854775807" in result.output
    assert "Traceback" not in result.output and "internal error" not in result.output


def test_the_commands_id_bound_is_the_stores() -> None:
    from cadence_engine.cli import ROW_ID
    from cadence_engine.engine.store import MAX_ROW_ID

    assert ROW_ID.max == MAX_ROW_ID
