"""End to end against a real Dovecot on 127.0.0.1: mail in by IMAP APPEND, `cadence inbox
poll` through the CLI, the state store read back with sqlite3."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.inbound import imap, poll
from cadence_engine.engine.store import Repository
from tests.helpers.dovecot import PASSWORD, Dovecot, running_dovecot
from tests.helpers.inbound_cases import sample
from tests.helpers.runner_env import ROOT
from tests.helpers.smtp_server import free_port

CADENCE = """\
cadence: 1
name: Inbound
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: true, timezone: UTC, default_timezone: UTC}
templates:
  hello:
    subject: "Hello {{ contact.first_name }}"
    body: "Hi {{ contact.first_name }}. {{ unsubscribe_url }}"
  bump: {subject: "Again {{ contact.first_name }}", body: "Hi again."}
  last: {subject: "Last {{ contact.first_name }}", body: "Bye."}
steps:
  - {id: hello, day: 1, email: {template: hello, send: {at: "09:00"}}}
  - {id: bump, day: 3, email: {template: bump, send: same_time_as_previous}}
  - {id: last, day: 5, email: {template: last, send: same_time_as_previous}}
"""
PEOPLE = ("ann", "ben", "cara", "dan", "eve", "fay", "gus", "hal", "ivy")
RECEIVED = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
MONDAY = "2026-03-02T00:00Z"


def email(name: str) -> str:
    return f"{name}@example.com"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


class World:
    """A launched cadence whose first emails went out on Monday 2 March 2026."""

    def __init__(
        self,
        folder: Path,
        server: Dovecot,
        monkeypatch: pytest.MonkeyPatch,
        cadence_text: str = CADENCE,
    ) -> None:
        self.folder = folder
        self.server = server
        self.db = folder / "cadence.db"
        self.outbox = folder / "outbox"
        (folder / "cadence.yaml").write_text(cadence_text, encoding="utf-8")
        rows = ["email,first_name"] + [f"{email(n)},{n.title()}" for n in PEOPLE]
        (folder / "contacts.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        self.env = {
            **server.env(),
            "CADENCE_DB": str(self.db),
            "CADENCE_TRANSPORT": f"outbox:{self.outbox}",
            "NO_COLOR": "1",
        }
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("CADENCE_BASE_URL", raising=False)
        monkeypatch.delenv("CADENCE_UNSUBSCRIBE_URL", raising=False)
        self.cli("launch", str(folder / "cadence.yaml"), "--contacts",
                 str(folder / "contacts.csv"), "--start", MONDAY, "--now", MONDAY)  # fmt: skip
        self.cli("run", "--once", "--now", "2026-03-02T10:00Z")

    def cli(self, *args: str, code: int = 0) -> str:
        result = CliRunner().invoke(cadence, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    def sql(self, query: str, *args: object) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db) as db:
            return db.execute(query, args).fetchall()

    def first_message_id(self, name: str) -> str:
        [(mid,)] = self.sql(
            "SELECT message_id FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id "
            "WHERE e.email = ? AND sr.step_id = 'hello'",
            email(name),
        )
        return str(mid)

    def token(self, name: str) -> str:
        [(token,)] = self.sql(
            "SELECT unsubscribe_token FROM enrolments WHERE email = ?", email(name)
        )
        return str(token)

    def sent_copy(self, name: str) -> bytes:
        for path in sorted(self.outbox.glob("*.eml")):
            data = path.read_bytes()
            if f"To: {name.title()} <{email(name)}>".encode() in data:
                return data
        raise AssertionError(f"no sent message to {name}")

    def mail(self, case: str, name: str) -> bytes:
        return sample(case).render(
            contact=email(name), msgid=self.first_message_id(name), token=self.token(name)
        )

    def append(self, *messages: bytes, when: datetime = RECEIVED) -> None:
        self.server.append(*messages, when=when)

    def steps(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(contact, step) → (state, due time): what a poll may change."""
        rows = self.sql(
            "SELECT e.email, sr.step_id, sr.state, sr.due_utc FROM step_runs sr "
            "JOIN enrolments e ON e.id = sr.enrolment_id"
        )
        return {
            (str(e).split("@")[0], str(s)): (
                str(st),
                datetime.fromtimestamp(int(str(d)), UTC).strftime("%m-%d %H:%M"),
            )
            for e, s, st, d in rows
        }

    def paused_until(self) -> dict[str, str]:
        rows = self.sql("SELECT email, paused_until FROM enrolments WHERE state = 'paused'")
        return {
            str(e).split("@")[0]: datetime.fromtimestamp(int(str(u)), UTC).strftime("%m-%d %H:%M")
            for e, u in rows
        }

    def enrolment_states(self) -> dict[str, str]:
        return {
            str(e).split("@")[0]: str(s) for e, s in self.sql("SELECT email, state FROM enrolments")
        }

    def poll(self, *extra: str, now: str = "2026-03-03T12:30Z") -> dict[str, object]:
        out = self.cli("inbox", "poll", "-f", "json", "--now", now, *extra)
        result: dict[str, object] = json.loads(out)
        return result

    def start(self, *args: str) -> subprocess.Popen[str]:
        """`cadence ARGS` as a real process (its own signals, its own clock), in this world."""
        return subprocess.Popen(
            [sys.executable, "-m", "cadence_engine.cli", *args],
            env={**os.environ, **self.env}, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip


@pytest.fixture
def world(tmp_path: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> World:
    dovecot.clear()
    return World(tmp_path, dovecot, monkeypatch)


def test_every_kind_of_message_acts_on_the_right_steps_only(world: World) -> None:
    before = world.steps()
    world.append(
        world.mail("reply-gmail-references", "ann"),
        world.mail("reply-iphone-address-only", "ben"),
        world.mail("ooo-outlook-return-date", "cara"),
        world.mail("vacation-gmail", "dan"),
        world.mail("bounce-postfix-dsn", "eve"),
        world.mail("bounce-exchange-ndr", "fay"),
        world.mail("unsubscribe-mailto", "gus"),
        world.mail("newsletter", "hal"),
        world.sent_copy("hal"),
    )
    report = world.poll()
    assert report["counts"] == {
        "reply": 2, "auto-reply": 2, "bounce": 2, "delayed": 0, "unsubscribe": 1,
        "ignored": 1, "own": 1,
    }  # fmt: skip
    kinds = {(m["contact"], m["kind"]) for m in report["messages"]}  # type: ignore[union-attr, index]
    assert kinds == {
        (email("ann"), "reply"), (email("ben"), "reply"), (email("cara"), "auto-reply"),
        (email("dan"), "auto-reply"), (email("eve"), "bounce"), (email("fay"), "bounce"),
        (email("gus"), "unsubscribe"),
    }  # fmt: skip

    assert world.enrolment_states() == {
        "ann": "replied", "ben": "replied", "cara": "paused", "dan": "paused",
        "eve": "bounced", "fay": "bounced", "gus": "unsubscribed", "hal": "active",
        "ivy": "active",
    }  # fmt: skip
    after = world.steps()
    for name in ("ann", "ben", "eve", "fay", "gus"):
        assert after[(name, "bump")][0] == after[(name, "last")][0] == "cancelled"
    # Cara is back Monday 9 March: paused until Tuesday the 10th. Dan gave no date: 5
    # campaign days, the 10th too. Their steps move when the pause ends (a run resumes it).
    assert world.paused_until() == {"cara": "03-10 00:00", "dan": "03-10 00:00"}
    for key in before:
        if key[0] in ("cara", "dan", "hal", "ivy"):
            assert after[key] == before[key]
    assert {s for (n, _), (s, _) in after.items() if n in ("hal", "ivy")} == {"sent", "planned"}

    suppressed = {str(e) for (e,) in world.sql("SELECT email FROM suppressions")}
    assert suppressed == {email("eve"), email("fay"), email("gus")}
    sources = world.sql("SELECT kind, source FROM events WHERE source LIKE 'mailbox %'")
    assert sorted(str(k) for k, _ in sources) == sorted(
        ["reply", "reply", "bounce", "bounce", "unsubscribe", "auto-reply", "auto-reply",
         "paused", "paused"]
    )  # fmt: skip
    assert all(str(s).startswith(f"mailbox {world.server.imaps_url} uid ") for _, s in sources)

    # Read again: nothing new, nothing changes; every message is still unseen.
    events = world.sql("SELECT count(*) FROM events")
    again = world.poll(now="2026-03-03T13:00Z")
    assert again["read"] == 0
    assert world.steps() == after
    assert world.sql("SELECT count(*) FROM events") == events
    flags = world.server.flags()
    assert len(flags) == 9 and not any("\\Seen" in f for f in flags)


def test_paused_contact_shows_in_status_then_resumes(world: World) -> None:
    world.append(world.mail("ooo-outlook-return-date", "cara"))
    world.poll()
    status = world.cli("status", "--now", "2026-03-05T10:00Z")
    assert "paused (auto-reply): cara@example.com in Inbound until 2026-03-10 00:00Z" in status
    assert "paused until 2026-03-10 (back 2026-03-09)" in status
    world.cli("run", "--once", "--now", "2026-03-05T10:00Z")
    steps = world.steps()
    assert steps[("cara", "bump")] == ("planned", "03-04 10:00")  # held, not sent
    assert steps[("hal", "bump")][0] == "sent"
    # The pause ends: the run resumes Cara and moves her schedule by the 5 campaign days
    # it lasted (Wed 4 → Wed 11, Fri 6 → Fri 13), as a late task moves it (R5).
    world.cli("run", "--once", "--now", "2026-03-10T00:00Z")
    steps = world.steps()
    assert world.enrolment_states()["cara"] == "active"
    assert steps[("cara", "bump")] == ("planned", "03-11 10:00")
    assert steps[("cara", "last")] == ("planned", "03-13 09:00")
    as_json = json.loads(world.cli("status", "-f", "json", "--now", "2026-03-11T10:00Z"))
    assert as_json["paused"] == []
    world.cli("run", "--once", "--now", "2026-03-11T10:00Z")
    assert world.steps()[("cara", "bump")][0] == "sent"


def test_changed_uidvalidity_rescans_by_date_and_acts_once(world: World) -> None:
    """A renumbered folder is read again from the day before the first launch (Monday 2
    March): messages received in February cannot concern an enrolment and are not read
    again, then or at the next poll (not even one with the highest UID, moved in from
    another folder with its old date)."""
    february = datetime(2026, 2, 20, 12, 0, tzinfo=UTC)
    world.append(world.mail("newsletter", "hal"), when=february)
    world.append(world.mail("reply-gmail-references", "ann"))
    first = world.poll()
    assert first["read"] == 2 and first["counts"]["reply"] == 1  # type: ignore[index]
    world.server.renumber()
    world.append(world.mail("reply-iphone-address-only", "ben"))
    world.append(world.mail("newsletter", "ivy"), when=february)
    report = world.poll(now="2026-03-03T13:00Z")
    assert report["rescanned"] is True
    assert report["uidvalidity"] != first["uidvalidity"]
    assert report["read"] == 2 and report["already_handled"] == 1  # Ann's again, Ben's
    assert report["counts"]["reply"] == 1  # type: ignore[index]
    assert world.enrolment_states()["ben"] == "replied"
    [(count,)] = world.sql("SELECT count(*) FROM events WHERE kind = 'reply'")
    assert count == 2
    again = world.poll(now="2026-03-03T13:30Z")
    assert again["rescanned"] is False and again["read"] == 0


def test_starttls_mailbox_works_and_is_refused_without_starttls(world: World) -> None:
    world.append(world.mail("reply-gmail-references", "ann"))
    report = world.poll("--mailbox", world.server.imap_url)
    assert report["counts"]["reply"] == 1  # type: ignore[index]
    out = world.cli("inbox", "poll", "--mailbox", world.server.plain_url, code=2)
    assert "does not offer STARTTLS" in out


def test_a_url_whose_scheme_is_not_what_its_port_speaks_says_which_to_try(world: World) -> None:
    s = world.server
    tls_on_starttls = s.imap_url.replace("imap://", "imaps://")
    out = world.cli("inbox", "poll", "--mailbox", tls_on_starttls, code=1)
    assert "cannot connect" in out and "wrong version number" in out.lower()
    assert f"port {s.imap_port} may expect imap:// (STARTTLS)" in out
    assert s.imap_url in out  # the URL to try, written out
    starttls_on_tls = s.imaps_url.replace("imaps://", "imap://")
    started = time.monotonic()
    out = world.cli("inbox", "poll", "--mailbox", starttls_on_tls, code=1)
    assert f"port {s.imaps_port} may expect imaps:// (TLS from the first byte)" in out
    assert s.imaps_url in out
    assert time.monotonic() - started < 30


def test_wrong_password_fails_clearly_and_never_shows_a_password(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CADENCE_IMAP_PASSWORD", "not-the-" + PASSWORD)
    out = world.cli("inbox", "poll", code=2)  # configuration, as an SMTP 535 is
    assert "login failed" in out and PASSWORD not in out and "CADENCE_IMAP_PASSWORD" in out
    out = world.cli("inbox", "poll", "--mailbox", "imaps://sales:hunter2@127.0.0.1/INBOX", code=2)
    assert "hunter2" not in out and "CADENCE_IMAP_PASSWORD" in out


@pytest.mark.parametrize("output_format", ["text", "json"])
def test_reply_arriving_during_run_every_stops_the_next_email(
    world: World, output_format: str
) -> None:
    """The poll comes before the pass: a reply that arrived before 10:00 stops the 10:00 email
    (the follow-up goes at the wall time the first email really went out, R4). With
    `-f json` the poll's news is JSON like every other line."""
    proc = world.start(
        "run", "--every", "* * * * *", "--now", "2026-03-04T09:59:45Z", "-f", output_format
    )
    try:
        world.append(world.mail("reply-iphone-address-only", "ben"))
        while world.steps()[("hal", "bump")][0] != "sent":  # the 10:00 pass has run
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    steps = world.steps()
    assert steps[("ben", "bump")][0] == "cancelled", (out, err)
    assert world.enrolment_states()["ben"] == "replied"
    assert not any(b"Again Ben" in p.read_bytes() for p in world.outbox.glob("*.eml"))
    assert "reply" in out
    if output_format == "json":
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert any("reply" in json.dumps(line) for line in lines), out


def test_inbox_poll_every_keeps_polling_and_stops_cleanly_on_sigterm(world: World) -> None:
    proc = world.start("inbox", "poll", "--every", "* * * * *", "--now", "2026-03-03T12:59:50Z")
    try:
        world.append(world.mail("bounce-postfix-dsn", "eve"))
        while world.enrolment_states()["eve"] != "bounced":
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "bounce 1" in out and "eve@example.com" in out


def test_on_auto_reply_ignore_logs_and_moves_nothing(
    tmp_path: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.clear()
    text = CADENCE.replace(
        "default_timezone: UTC}", "default_timezone: UTC, on_auto_reply: ignore}"
    )
    world = World(tmp_path, dovecot, monkeypatch, cadence_text=text)
    before = world.steps()
    world.append(world.mail("ooo-outlook-return-date", "cara"))
    out = world.cli("inbox", "poll", "--now", "2026-03-03T12:30Z")
    assert "auto-reply 1" in out and "on_auto_reply: ignore" in out
    assert world.steps() == before
    assert world.sql("SELECT kind FROM events WHERE source LIKE 'mailbox %'") == [("auto-reply",)]
    assert world.enrolment_states()["cara"] == "active"


def test_a_reply_with_a_large_attachment_is_read_from_its_first_bytes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[int] = []  # the bytes the poll got of each message
    fetch = imap.Connection.fetch

    def counting(self: imap.Connection, uids: Sequence[int]) -> Iterator[list[imap.Fetched]]:
        for chunk in fetch(self, uids):
            fetched.extend(len(f.data) for f in chunk)
            yield chunk

    monkeypatch.setattr(imap.Connection, "fetch", counting)
    reply = EmailMessage()
    reply["From"] = f"Ann <{email('ann')}>"
    reply["To"] = "dana@acme.example"
    reply["Subject"] = "Re: Hello Ann"
    reply["Message-ID"] = "<big-reply@example.com>"
    reply["In-Reply-To"] = world.first_message_id("ann")
    reply.set_content("Yes, see the deck attached.")
    reply.add_attachment(bytes(range(256)) * 8192, maintype="application", subtype="pdf")
    data = reply.as_bytes()
    assert len(data) > 8 * imap.PEEK_BYTES  # 2.7 MiB in base64
    world.append(data)
    report = world.poll()
    assert report["counts"]["reply"] == 1  # type: ignore[index]
    assert world.enrolment_states()["ann"] == "replied"
    assert fetched == [imap.PEEK_BYTES]  # its first 256 KiB, not the attachment


def test_a_reply_whose_subject_looks_like_an_unsubscribe_is_still_a_reply(world: World) -> None:
    data = world.mail("reply-iphone-address-only", "ben").replace(
        b"Subject: Quick question", b"Subject: Re: unsubscribe yourselves? no, call me"
    )
    world.append(data)
    report = world.poll()
    assert report["counts"]["reply"] == 1 and report["counts"]["unsubscribe"] == 0  # type: ignore[index]
    assert world.enrolment_states()["ben"] == "replied"


def test_the_enrolments_of_a_chunk_are_read_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ann's reply names her as the owner of its thread and as its sender, the bounce names
    Eve by the returned Message-ID and as the failed recipient: one read of the enrolments
    for the chunk, of every address at once."""
    reads: list[set[str]] = []
    enrolled = poll._enrolled

    def counting(store: Repository, emails: Iterable[str]) -> dict[str, list[poll.Enrolled]]:
        emails = set(emails)
        reads.append(emails)
        return enrolled(store, emails)

    monkeypatch.setattr(poll, "_enrolled", counting)
    world.append(
        world.mail("reply-gmail-references", "ann"), world.mail("bounce-postfix-dsn", "eve")
    )
    report = world.poll()
    assert report["counts"]["reply"] == report["counts"]["bounce"] == 1  # type: ignore[index]
    assert len(reads) == 1, reads
    assert {email("ann"), email("eve")} <= reads[0]


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("CADENCE_IMAP_PASSWORD", "", "CADENCE_IMAP_PASSWORD is not set"),
        ("CADENCE_IMAP_CAFILE", "/nonexistent/ca.pem", "CADENCE_IMAP_CAFILE='/nonexistent/ca.pem'"),
    ],
)
def test_a_bad_mailbox_setting_is_a_usage_error_at_start(
    world: World, monkeypatch: pytest.MonkeyPatch, setting: str, value: str, says: str
) -> None:
    """Checked before anything connects (the server here is not even there), and once:
    `run --every` and `inbox poll --every` stop at once with exit 2 instead of logging an
    error at every pass."""
    monkeypatch.setenv("CADENCE_IMAP_URL", f"imaps://sales@127.0.0.1:{free_port()}/INBOX")
    monkeypatch.setenv(setting, value)
    out = world.cli("inbox", "poll", code=2)
    assert says in out and "cannot connect" not in out, out
    world.env = {**world.env, "CADENCE_IMAP_URL": os.environ["CADENCE_IMAP_URL"], setting: value}
    for args in (("run", "--every", "* * * * *"), ("inbox", "poll", "--every", "* * * * *")):
        proc = world.start(*args, "--now", "2026-03-03T12:59:58Z")
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"{args}: still running on a bad {setting}: {err}") from None
        assert proc.returncode == 2, (args, out, err)
        assert says in err and "cannot connect" not in err + out, (args, err)
