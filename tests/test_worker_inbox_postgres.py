"""`cadence worker` polls CADENCE_IMAP_URL: a real PostgreSQL store, a real Dovecot, the
worker as a real process. A reply APPENDed to the mailbox stops the contact's next email
(the poll comes before the sends), is logged once with its mailbox source however many
workers run, and a poll that fails is logged without the password and kills nothing."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from cadence_engine.engine.store import open_store
from tests.helpers.dovecot import PASSWORD, Dovecot, running_dovecot
from tests.helpers.inbound_cases import sample
from tests.helpers.runner_env import cadence_cmd, write_cadence
from tests.test_worker_postgres import finish, worker

TWO_EMAILS = """\
cadence: 1
name: Worker inbox
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, timezone: UTC, default_timezone: UTC}
templates:
  hello: {subject: "Hello {{ contact.first_name }}", body: "Hi. {{ unsubscribe_url }}"}
  bump: {subject: "Again {{ contact.first_name }}", body: "Hi again."}
steps:
  - {id: hello, day: 1, email: {template: hello, send: {at: "09:00"}}}
  - {id: bump, day: 2, email: {template: bump, send: same_time_as_previous}}
"""
PEOPLE = ("ann", "ben", "cara")


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


def launched(folder: Path, url: str, outbox: Path) -> None:
    """Three contacts whose first email went out yesterday; the second is due now."""
    due = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    first = due - timedelta(days=1)
    contacts = folder / "contacts.csv"
    rows = ["email,first_name", *(f"{n}@example.com,{n.title()}" for n in PEOPLE)]
    contacts.write_text("\n".join(rows) + "\n", encoding="utf-8")
    env = {"CADENCE_DB": url, "CADENCE_TRANSPORT": f"outbox:{outbox}"}
    result = cadence_cmd(
        "launch", str(write_cadence(folder, TWO_EMAILS)), "--contacts", str(contacts),
        "--start", f"{first:%Y-%m-%d}T00:00Z", "--send-at", f"{first:%H:%M}",
        "--now", f"{first:%Y-%m-%d}T00:00Z", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = cadence_cmd("run", "--once", "--now", f"{first:%Y-%m-%dT%H:%M}Z", env=env)
    assert result.returncode == 0, result.stderr
    assert len(list(outbox.glob("*.eml"))) == len(PEOPLE)


def reply_of(url: str, name: str) -> bytes:
    """Ben's reply to his first email, as his mail client would thread it."""
    with open_store(url) as store:
        [enrolment] = [e for e in store.enrolments() if e.email == f"{name}@example.com"]
        rows = store.step_runs_of([enrolment.id])[enrolment.id]
        [hello] = [r for r in rows if r.step_id == "hello"]
        assert hello.message_id is not None
        return sample("reply-gmail-references").render(
            contact=enrolment.email, msgid=hello.message_id, token=enrolment.unsubscribe_token
        )


def sent_to(outbox: Path, subject: str) -> list[str]:
    return sorted(
        name
        for name in PEOPLE
        for p in outbox.glob("*.eml")
        if f"Subject: {subject} {name.title()}".encode() in p.read_bytes()
    )


def replies(url: str) -> list[tuple[str, str]]:
    with open_store(url) as store:
        return [(e.email, e.source) for e in store.events() if e.kind == "reply"]


def sql(url: str, query: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, args).fetchall()


def test_a_reply_in_the_mailbox_stops_the_next_email_of_its_contact(
    tmp_path: Path, postgres_url: str, dovecot: Dovecot
) -> None:
    dovecot.clear()
    outbox = tmp_path / "outbox"
    launched(tmp_path, postgres_url, outbox)
    dovecot.append(reply_of(postgres_url, "ben"), when=datetime.now(UTC))
    args = ("--until-idle", "--transport", f"outbox:{outbox}")
    out = finish(worker(postgres_url, dovecot.env(), *args))
    assert sent_to(outbox, "Again") == ["ann", "cara"]
    [(who, source)] = replies(postgres_url)
    assert who == "ben@example.com"
    assert source.startswith(f"mailbox {dovecot.imaps_url} uid "), source
    assert "reply" in out and "ben@example.com" in out


def test_two_workers_act_on_a_reply_once(
    tmp_path: Path, postgres_url: str, dovecot: Dovecot
) -> None:
    dovecot.clear()
    outbox = tmp_path / "outbox"
    launched(tmp_path, postgres_url, outbox)
    dovecot.append(reply_of(postgres_url, "ben"), when=datetime.now(UTC))
    args = ("--until-idle", "--transport", f"outbox:{outbox}")
    procs = [worker(postgres_url, dovecot.env(), *args, "--name", f"w{i}") for i in range(2)]
    outs = [finish(p) for p in procs]
    assert sent_to(outbox, "Again") == ["ann", "cara"]
    assert [who for who, _ in replies(postgres_url)] == ["ben@example.com"]
    # One worker's poll acted on it; the other's found it already handled.
    assert sum("ben@example.com" in out for out in outs) == 1, outs


def test_a_failed_poll_is_logged_without_the_password_and_the_sends_go_on(
    tmp_path: Path, postgres_url: str, dovecot: Dovecot
) -> None:
    outbox = tmp_path / "outbox"
    launched(tmp_path, postgres_url, outbox)
    wrong = "not-the-" + PASSWORD
    env = {**dovecot.env(), "CADENCE_IMAP_PASSWORD": wrong}
    proc = worker(postgres_url, env, "--until-idle", "--transport", f"outbox:{outbox}")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert f"inbox poll of {dovecot.imaps_url} failed" in err and "login failed" in err
    assert wrong not in err + out and "Traceback" not in err
    assert sent_to(outbox, "Again") == list(PEOPLE)


def test_running_workers_poll_once_a_minute_and_act_on_a_new_reply_once(
    tmp_path: Path, postgres_url: str, dovecot: Dovecot
) -> None:
    """Mail that arrives while two workers run is read by the periodic `cadence.inbox` job
    (their start-up polls saw an empty mailbox): one event, one replied enrolment."""
    dovecot.clear()
    outbox = tmp_path / "outbox"
    launched(tmp_path, postgres_url, outbox)
    args = ("--transport", f"outbox:{outbox}")
    procs = [worker(postgres_url, dovecot.env(), *args, "--name", f"w{i}") for i in range(2)]
    try:
        while len(sql(postgres_url, "SELECT id FROM procrastinate_workers")) < 2:
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.2)
        # The start-up passes send them; a worker registers before its pass has ended.
        hang_guard = time.monotonic() + 120
        while sent_to(outbox, "Again") != list(PEOPLE) and time.monotonic() < hang_guard:
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.2)
        assert sent_to(outbox, "Again") == list(PEOPLE)
        dovecot.append(reply_of(postgres_url, "ben"), when=datetime.now(UTC))
        while not replies(postgres_url):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.5)
    except BaseException:
        for p in procs:  # reaped, so a failure here does not leak into the next test
            p.kill()
            p.communicate()
        raise
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
    outs = [finish(p) for p in procs]
    [(who, source)] = replies(postgres_url)
    assert who == "ben@example.com" and source.startswith(f"mailbox {dovecot.imaps_url} uid ")
    with open_store(postgres_url) as store:
        states = {e.email: str(e.state) for e in store.enrolments()}
    assert states["ben@example.com"] == "replied"
    assert sum("ben@example.com" in out for out in outs) == 1, outs
    periodic = sql(
        postgres_url,
        "SELECT defer_timestamp FROM procrastinate_periodic_defers WHERE task_name = %s",
        "cadence.inbox",
    )
    assert periodic and len(periodic) == len(set(periodic))
