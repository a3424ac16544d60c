"""End to end against a real SMTP server (aiosmtpd, STARTTLS + AUTH on 127.0.0.1)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.store import open_store
from cadence_engine.engine.transports import TemporaryFailure
from cadence_engine.engine.transports.smtp import SmtpSettings, SmtpTransport
from tests.helpers.runner_env import write_cadence
from tests.helpers.smtp_server import SmtpServer, serve

THREAD = """\
cadence: 1
name: Threads
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  intro:
    subject: "{{ contact.company }} and on-call"
    body: |
      Hi {{ contact.first_name }},
      intro text for {{ contact.company }}.
      Unsubscribe: {{ unsubscribe_url }}
  bump:
    body: |
      Bumping this.
  last:
    body: |
      Last one.
steps:
  - {id: intro, day: 1, email: {template: intro, send: {at: "09:00"}}}
  - {id: bump, day: 2, email: {template: bump, send: {at: "09:00"}, follow_up: true}}
  - {id: last, day: 3, email: {template: last, send: {at: "09:00"}, follow_up: true}}
"""


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    yield from serve(tmp_path_factory.mktemp("smtp"))


@pytest.fixture
def env(smtp: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str) -> Path:
    smtp.recorder.clear()
    for key, value in smtp.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CADENCE_DB", store_url)  # a SQLite file, then PostgreSQL
    monkeypatch.setenv("CADENCE_UNSUBSCRIBE_URL", "https://acme.example/u/")
    return tmp_path


def _invoke(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cadence, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def _launch(folder: Path, rows: list[str]) -> None:
    path = write_cadence(folder, THREAD)
    contacts = folder / "contacts.csv"
    contacts.write_text("email,first_name,company\n" + "\n".join(rows) + "\n", encoding="utf-8")
    _invoke(
        "launch", str(path), "--contacts", str(contacts), "--start", "2026-03-02T08:00Z",
        "--now", "2026-03-02T08:00Z",
    )  # fmt: skip


def test_thread_headers_quoting_and_unsubscribe(env: Path, smtp: SmtpServer) -> None:
    _launch(env, ["ava@northwind.example,Ava,Northwind"])
    for day in ("2026-03-02", "2026-03-03", "2026-03-04"):
        _invoke("run", "--once", "--now", f"{day}T10:00Z")
    got = [r.message for r in smtp.recorder.received]
    assert [m["Subject"] for m in got] == ["Northwind and on-call"] + [
        "Re: Northwind and on-call"
    ] * 2
    assert all(r.rcpt_tos == ["ava@northwind.example"] for r in smtp.recorder.received)
    assert all(r.mail_from == "dana@acme.example" for r in smtp.recorder.received)
    intro, bump, last = got
    assert str(intro["From"]) == "Dana Reyes <dana@acme.example>"
    assert str(intro["To"]) == "Ava <ava@northwind.example>"
    assert intro["In-Reply-To"] is None
    assert bump["In-Reply-To"] == intro["Message-ID"]
    assert bump["References"] == intro["Message-ID"]
    assert last["In-Reply-To"] == bump["Message-ID"]
    assert last["References"].split() == [intro["Message-ID"], bump["Message-ID"]]
    # R3: the previous email is quoted below the new text.
    text = bump.get_content()
    assert text.startswith("Bumping this.")
    assert "> intro text for Northwind." in text
    # One-click unsubscribe with the per-enrolment token, and a mailto: fallback.
    unsub = intro["List-Unsubscribe"]
    token = unsub.removeprefix("<https://acme.example/u/").split(">")[0]
    assert unsub == (
        f"<https://acme.example/u/{token}>, "
        f"<mailto:dana+unsubscribe-{token}@acme.example?subject=unsubscribe%20{token}>"
    )
    assert intro["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = unsub.split("/u/")[1].split(">")[0]
    assert f"Unsubscribe: https://acme.example/u/{token}" in intro.get_content()
    # Message-IDs are the deterministic ones the store recorded.
    with open_store(os.environ["CADENCE_DB"]) as store:
        ids = {r.message_id for r in store.step_runs(1)}
    assert {m["Message-ID"] for m in got} == ids


def test_rcpt_550_bounces_and_suppresses(env: Path, smtp: SmtpServer) -> None:
    smtp.recorder.reject.add("gone@globex.example")
    _launch(env, ["gone@globex.example,Ben,Globex", "ok@globex.example,Ok,Globex"])
    # A permanent failure of one recipient: recorded with the server's answer, exit 1.
    assert "1 email(s) failed" in _invoke("run", "--once", "--now", "2026-03-02T10:00Z", code=1)
    _invoke("run", "--once", "--now", "2026-03-03T10:00Z")
    assert sorted(r.rcpt_tos[0] for r in smtp.recorder.received) == [
        "ok@globex.example",
        "ok@globex.example",
    ]
    status = json.loads(_invoke("status", "-f", "json"))
    assert status["cadences"][0]["finished"]["bounced"] == 1
    with open_store(os.environ["CADENCE_DB"]) as store:
        (row,) = [r for r in store.step_runs(1) if r.step_id == "intro"]
        assert row.state == "failed"
        assert row.answer is not None and row.answer.startswith("550 5.1.1")
    # One `failed` event with the server's answer and one `bounce` (the signal), not two
    # bounces and no failure.
    shown = json.loads(_invoke("enrolments", "show", "gone@globex.example", "-f", "json"))
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds.count("failed") == 1 and kinds.count("bounce") == 1, kinds
    (failed,) = [e for e in shown["events"] if e["kind"] == "failed"]
    assert failed["detail"].startswith("550 5.1.1") and failed["source"] == "runner"
    # Suppressed for every cadence: a new launch skips the address.
    _launch(env, ["gone@globex.example,Ben,Globex"])


def test_header_injection_from_contact_data_is_impossible(env: Path, smtp: SmtpServer) -> None:
    evil = '"Evil\r\nBcc: victim@evil.example",Ev\r\nX-Injected: yes'
    path = env / "contacts.json"
    path.write_text(
        json.dumps(
            [
                {
                    "email": "eve@evil.example",
                    "first_name": "Eve\r\nBcc: victim@evil.example",
                    "company": "Evil\nX-Injected: yes",
                }
            ]
        ),
        encoding="utf-8",
    )
    assert evil  # the same payload as a CSV cell would be quoted; JSON keeps it exact
    cadence_path = write_cadence(env, THREAD)
    _invoke(
        "launch", str(cadence_path), "--contacts", str(path), "--start", "2026-03-02T08:00Z",
        "--now", "2026-03-02T08:00Z",
    )  # fmt: skip
    _invoke("run", "--once", "--now", "2026-03-02T10:00Z")
    (received,) = smtp.recorder.received
    assert received.rcpt_tos == ["eve@evil.example"]
    msg = received.message
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert msg["Subject"] == "Evil X-Injected: yes and on-call"


def test_451_to_rcpt_is_retried_with_backoff(env: Path, smtp: SmtpServer) -> None:
    smtp.recorder.defer.add("later@northwind.example")
    _launch(env, ["later@northwind.example,Lou,Northwind"])
    _invoke("run", "--once", "--now", "2026-03-02T10:00Z")
    assert smtp.recorder.received == []
    with open_store(os.environ["CADENCE_DB"]) as store:
        row = store.step_runs(1)[0]
    assert (row.state, row.attempts) == ("planned", 1)
    assert row.answer is not None and row.answer.startswith("451")
    (c,) = json.loads(_invoke("status", "-f", "json"))["cadences"]
    assert (c["retrying"], c["failed"], c["due"]) == (1, 0, 0)
    smtp.recorder.defer.clear()
    _invoke("run", "--once", "--now", "2026-03-02T10:00:30Z")  # backoff not over yet
    assert smtp.recorder.received == []
    _invoke("run", "--once", "--now", "2026-03-02T10:05Z")
    assert [r.rcpt_tos for r in smtp.recorder.received] == [["later@northwind.example"]]


def test_connection_refused_is_a_temporary_failure() -> None:
    from tests.helpers.smtp_server import free_port

    transport = SmtpTransport(
        "127.0.0.1", free_port(), implicit_tls=False, settings=SmtpSettings(timeout=2)
    )
    with pytest.raises(TemporaryFailure):
        transport.open()


def test_auth_failure_is_clear_and_sends_nothing(
    env: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _launch(env, ["ava@northwind.example,Ava,Northwind"])
    monkeypatch.setenv("CADENCE_SMTP_PASSWORD", "wrong")
    result = CliRunner().invoke(cadence, ["run", "--once", "--now", "2026-03-02T10:00Z"])
    assert result.exit_code == 2, result.output
    assert "SMTP login refused" in result.output and "CADENCE_SMTP_PASSWORD" in result.output
    with open_store(os.environ["CADENCE_DB"]) as store:
        assert store.step_runs(1)[0].state == "planned"  # released, not sent
    (c,) = json.loads(_invoke("status", "-f", "json", "--now", "2026-03-02T10:00Z"))["cadences"]
    assert (c["failed"], c["finished"]["completed"], c["active"], c["due"]) == (0, 0, 1, 1)
    # Fixed credentials: the email goes out at once, not after the claim's lease.
    monkeypatch.setenv("CADENCE_SMTP_PASSWORD", "s3cret-for-tests")
    assert "sent 1" in _invoke("run", "--once", "--now", "2026-03-02T10:00Z")
    assert [r.rcpt_tos for r in smtp.recorder.received] == [["ava@northwind.example"]]


def test_missing_credentials_530_stops_the_run_and_gives_the_batch_back(
    env: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _launch(env, [f"p{i}@northwind.example,P{i},Northwind" for i in range(3)])
    monkeypatch.delenv("CADENCE_SMTP_USER")
    monkeypatch.delenv("CADENCE_SMTP_PASSWORD")
    result = CliRunner().invoke(cadence, ["run", "--once", "--now", "2026-03-02T10:00Z"])
    assert result.exit_code == 2, result.output
    assert "requires authentication (530" in result.output
    assert "CADENCE_SMTP_USER" in result.output and "Traceback" not in result.output
    assert smtp.recorder.received == []
    with open_store(os.environ["CADENCE_DB"]) as store:
        assert [store.step_runs(e)[0].state for e in (1, 2, 3)] == ["planned"] * 3
    status = json.loads(_invoke("status", "-f", "json", "--now", "2026-03-02T10:00Z"))
    (c,) = status["cadences"]
    assert (c["failed"], c["finished"]["completed"], c["active"], c["due"]) == (0, 0, 3, 3)
    assert status["unknown_sends"] == []


def test_a_bounce_shows_as_failed_in_status(env: Path, smtp: SmtpServer) -> None:
    smtp.recorder.reject.add("gone@globex.example")
    _launch(env, ["gone@globex.example,Ben,Globex"])
    _invoke("run", "--once", "--now", "2026-03-02T10:00Z", code=1)
    (c,) = json.loads(_invoke("status", "-f", "json"))["cadences"]
    assert (c["failed"], c["retrying"], c["finished"]["bounced"]) == (1, 0, 1)
    assert "failed 1, retrying 0" in _invoke("status")


KEEP_ON_BOUNCE = """\
cadence: 1
name: Keep on bounce
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC, remove_on_bounce: false}
templates:
  t: {subject: "Hello", body: "Body\\n"}
steps:
  - {id: intro, day: 1, email: {template: t, send: {at: "09:00"}}}
  - {id: call, day: 2, call: {}}
  - {id: note, day: 2, email: {template: t, send: task}}
  - {id: last, day: 3, email: {template: t, send: {at: "09:00"}}}
"""


def test_remove_on_bounce_false_keeps_tasks_but_sends_no_more(env: Path, smtp: SmtpServer) -> None:
    smtp.recorder.reject.add("gone@globex.example")
    path = write_cadence(env, KEEP_ON_BOUNCE)
    contacts = env / "contacts.csv"
    contacts.write_text("email\ngone@globex.example\n", encoding="utf-8")
    _invoke(
        "launch", str(path), "--contacts", str(contacts), "--start", "2026-03-02T08:00Z",
        "--now", "2026-03-02T08:00Z",
    )  # fmt: skip
    assert "bounced 1" in _invoke("run", "--once", "--now", "2026-03-02T10:00Z", code=1)
    (c,) = json.loads(_invoke("status", "-f", "json"))["cadences"]
    assert (c["active"], c["finished"]["bounced"]) == (1, 0)  # still enrolled
    with open_store(os.environ["CADENCE_DB"]) as store:
        intro = store.step_runs(1)[0]
        assert intro.state == "failed" and intro.answer and intro.answer.startswith("550")
    # The call still becomes a task; the email task and the last email do not go out.
    _invoke("run", "--once", "--now", "2026-03-03T10:00Z")
    listed = _invoke("tasks", "list")
    assert "call task" in listed and "email task" not in listed
    _invoke("tasks", "done", listed.split("\n")[1].split()[0], "--now", "2026-03-03T11:00Z")
    _invoke("run", "--once", "--now", "2026-03-04T10:00Z")
    with open_store(os.environ["CADENCE_DB"]) as store:
        states = {r.step_id: r.state for r in store.step_runs(1)}
    assert states == {"intro": "failed", "call": "done", "note": "cancelled", "last": "cancelled"}
    assert len(smtp.recorder.received) == 0
    (c,) = json.loads(_invoke("status", "-f", "json"))["cadences"]
    assert c["finished"]["completed"] == 1
    # Suppressed for every cadence: launching the address elsewhere reports it.
    other = write_cadence(env, KEEP_ON_BOUNCE.replace("Keep on bounce", "Other"), "other.yaml")
    out = _invoke(
        "launch", str(other), "--contacts", str(contacts), "--now", "2026-03-04T10:00Z",
    )  # fmt: skip
    assert "enrolled 0" in out and "gone@globex.example: unsubscribed or bounced" in out


EMAIL_TASK = """\
cadence: 1
name: Task over SMTP
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  t: {subject: "Hello {{ contact.company }}", body: "Hi {{ contact.first_name }}\\n"}
steps:
  - {id: note, day: 1, email: {template: t, send: task}}
"""


def _open_email_task(folder: Path, email: str) -> str:
    """`email` launched on EMAIL_TASK and its email task opened: the task's id."""
    path = write_cadence(folder, EMAIL_TASK)
    contacts = folder / "contacts.csv"
    contacts.write_text(f"email,first_name,company\n{email},Ben,Globex\n", encoding="utf-8")
    _invoke(
        "launch", str(path), "--contacts", str(contacts), "--start", "2026-03-02T08:00Z",
        "--now", "2026-03-02T08:00Z",
    )  # fmt: skip
    assert "tasks opened 1" in _invoke("run", "--once", "--now", "2026-03-02T10:00Z")
    return str(json.loads(_invoke("tasks", "list", "-f", "json"))[0]["id"])


def _send_task(task_id: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cadence,
        ["tasks", "send", task_id, "--body-file", "-", "--now", "2026-03-02T10:00Z"],
        input="My own words.\n",
    )
    return result.exit_code, result.output


def test_tasks_send_refused_for_good_is_a_failure_with_the_servers_answer(
    env: Path, smtp: SmtpServer
) -> None:
    smtp.recorder.reject.add("gone@globex.example")
    task_id = _open_email_task(env, "gone@globex.example")
    code, out = _send_task(task_id)
    # Not a usage error: the command was right, the server refused the address (exit 1).
    assert code == 1, out
    assert f"task {task_id} was not sent: the server refused it" in out
    assert "550 5.1.1 <gone@globex.example>: Recipient address rejected" in out
    assert "Traceback" not in out and smtp.recorder.received == []
    with open_store(os.environ["CADENCE_DB"]) as store:
        row = store.step_run(int(task_id))
    assert row is not None and row.state == "failed"


def test_tasks_send_deferred_says_when_the_runner_retries(env: Path, smtp: SmtpServer) -> None:
    smtp.recorder.defer.add("later@globex.example")
    task_id = _open_email_task(env, "later@globex.example")
    code, out = _send_task(task_id)
    assert code == 1, out
    with open_store(os.environ["CADENCE_DB"]) as store:
        row = store.step_run(int(task_id))
    assert row is not None and (row.state, row.attempts) == ("planned", 1)
    retry = datetime.fromtimestamp(row.due_utc, UTC)
    assert retry == datetime(2026, 3, 2, 10, 1, tzinfo=UTC)  # the first backoff: 1 minute
    assert f"task {task_id} was not sent: the server deferred it (451 4.3.0" in out
    assert "the runner retries it with your text at 2026-03-02 10:01 UTC" in out
    assert "planned (" not in out and "Traceback" not in out
    # The retry time the message gave is the one the runner keeps, with the rep's text.
    smtp.recorder.defer.clear()
    _invoke("run", "--once", "--now", "2026-03-02T10:00:30Z")
    assert smtp.recorder.received == []
    assert "sent 1" in _invoke("run", "--once", "--now", "2026-03-02T10:01Z")
    (received,) = smtp.recorder.received
    assert received.message.get_content().strip() == "My own words."
