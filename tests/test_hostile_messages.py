"""Hostile contact data end to end: no header injection, no broken header blocks, and one
contact whose message cannot be built never takes the rest of its batch down.

Each case is a contact a CRM export really can hold (issue 8, defects 1–3), launched
and run through the CLI, delivered to a real SMTP server (aiosmtpd on loopback) and to
the outbox; the received bytes are parsed with `email.policy.strict`.
"""

from __future__ import annotations

import base64
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cadence_engine.cli import cadence
from cadence_engine.engine.delivery import clean
from cadence_engine.engine.store.sqlite import SqliteStore
from tests.helpers.mail import display_name, parse_strict, raw_headers
from tests.helpers.runner_env import cadence_cmd, write_cadence
from tests.helpers.smtp_server import SmtpServer, serve

CADENCE = """\
cadence: 1
name: Hostile
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  intro:
    subject: "{{ contact.company }} and on-call load"
    body: |
      Hi {{ contact.first_name | default("there") }},
      a note for {{ contact.company }}.
      Unsubscribe: {{ unsubscribe_url }}
steps:
  - {id: intro, day: 1, email: {template: intro, send: {at: "09:00"}}}
"""

CRLF_BCC = "=?utf-8?q?Acme_Corp=0D=0ABcc=3A_attacker=40evil.example?="
B64_REPLY_TO = "=?utf-8?b?" + base64.b64encode(b"Acme\r\nReply-To: x@evil.example").decode() + "?="
END_OF_HEADERS = "=?utf-8?q?Acme=0D=0A=0D=0AFake_body?="
LONG = "L" * 90

# (email, first_name, last_name, company): defects 1–3 of the issue, then plain contacts.
HOSTILE = [
    ("crlf@bad.example", "Cat", "Crlf", CRLF_BCC),
    ("b64@bad.example", "Bea", "Base", B64_REPLY_TO),
    ("end@bad.example", "Ed", "End", END_OF_HEADERS),
    ("long@bad.example", LONG, LONG, "Longnames"),
    ("sep@bad.example", "Sep", "Arator", "Acme\u2028Bcc: x@evil.example\u2029\u0085Corp"),
    ("longcrlf@bad.example", "=?utf-8?q?" + "N" * 80 + "=0D=0ABcc:_a@evil.example?=", "X", "Co"),
    ("idn@bücher.example", "Idn", "Domain", "Bücher"),
    ("ava@northwind.example", "Ava", "Nakamura", "Northwind"),
    ("ben@globex.example", "Ben", "Smith", "Globex"),
]
EXPECTED_HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
}
START = ["--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z"]
RUN = ["run", "--once", "--now", "2026-03-02T10:00Z"]


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    yield from serve(tmp_path_factory.mktemp("smtp-hostile"))


def _env(folder: Path, transport: str) -> dict[str, str]:
    return {
        "CADENCE_DB": str(folder / "state.db"),
        "CADENCE_TRANSPORT": transport,
        "CADENCE_UNSUBSCRIBE_URL": "https://acme.example/u/",
    }


def _invoke(env: dict[str, str], *args: str) -> Result:
    result = CliRunner().invoke(cadence, list(args), env=env)
    assert "Traceback" not in result.output and "internal error" not in result.output
    return result


def _contacts(folder: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    path = folder / "contacts.json"
    keys = ("email", "first_name", "last_name", "company")
    path.write_text(json.dumps([dict(zip(keys, r, strict=True)) for r in rows]), encoding="utf-8")
    return path


def _launch(folder: Path, env: dict[str, str], rows: list[tuple[str, str, str, str]]) -> None:
    cadence_path = write_cadence(folder, CADENCE)
    result = _invoke(
        env, "launch", str(cadence_path), "--contacts", str(_contacts(folder, rows)), *START
    )
    assert result.exit_code == 0, result.output


def _check(data: bytes, row: tuple[str, str, str, str]) -> None:
    email, first, last, company = row
    msg = parse_strict(data)
    assert set(msg.keys()) == EXPECTED_HEADERS and len(msg.keys()) == len(EXPECTED_HEADERS)
    assert str(msg["Subject"]) == clean(f"{company} and on-call load")
    assert msg["Message-ID"].startswith("<") and msg["Date"] is not None
    (to,) = msg["To"].addresses
    assert to.username == email.split("@")[0]
    to_field = dict(raw_headers(data))["To"]
    assert display_name(to_field) == clean(f"{first} {last}")
    assert f"a note for {company}." in msg.get_content()


def _by_recipient(rows: list[tuple[str, str, str, str]]) -> dict[str, tuple[str, str, str, str]]:
    ascii_domain = {"idn@bücher.example": "idn@xn--bcher-kva.example"}
    return {ascii_domain.get(r[0], r[0]): r for r in rows}


def test_hostile_contacts_over_smtp(smtp: SmtpServer, tmp_path: Path) -> None:
    smtp.recorder.received.clear()
    env = {**_env(tmp_path, smtp.url), **smtp.env()}
    _launch(tmp_path, env, HOSTILE)
    result = _invoke(env, *RUN)
    assert result.exit_code == 0, result.output
    assert f"sent {len(HOSTILE)}" in result.output
    wanted = _by_recipient(HOSTILE)
    received = smtp.recorder.received
    assert len(received) == len(HOSTILE)
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(wanted)
    for r in received:
        assert len(r.rcpt_tos) == 1  # one RCPT per message: no Bcc ever reaches the envelope
        _check(r.data, wanted[r.rcpt_tos[0]])


def _outbox_messages(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((folder / "out").rglob("*.eml"))]


def test_hostile_contacts_to_the_outbox(tmp_path: Path) -> None:
    env = _env(tmp_path, f"outbox:{tmp_path / 'out'}")
    utf8_local = ("jörg@a.example", "Jörg", "Ümlaut", "Umlaut GmbH")
    rows = [*HOSTILE, utf8_local]
    _launch(tmp_path, env, rows)
    result = _invoke(env, *RUN)
    assert result.exit_code == 0, result.output
    written = _outbox_messages(tmp_path)
    assert len(written) == len(rows)
    wanted = _by_recipient(rows)
    for data in written:
        _check(data, wanted[parse_strict(data)["To"].addresses[0].addr_spec])
    messages = [parse_strict(data) for data in written]
    (jorg,) = [m for m in messages if m["To"].addresses[0].username == "jörg"]
    assert jorg["To"].addresses[0].display_name == "Jörg Ümlaut"


def test_an_address_the_builder_cannot_write_is_a_bad_row_at_launch(tmp_path: Path) -> None:
    env = _env(tmp_path, f"outbox:{tmp_path / 'out'}")
    rows = [("evil\u202eelpmaxe@a.example", "Rtl", "O", "Co"), *HOSTILE[-2:]]
    cadence_path = write_cadence(tmp_path, CADENCE)
    contacts = _contacts(tmp_path, rows)
    refused = _invoke(env, "launch", str(cadence_path), "--contacts", str(contacts), *START)
    assert refused.exit_code == 1
    assert "row 1" in refused.output and "RIGHT-TO-LEFT OVERRIDE" in refused.output
    skipped = _invoke(
        env, "launch", str(cadence_path), "--contacts", str(contacts), "--skip-invalid", *START
    )
    assert skipped.exit_code == 0, skipped.output
    assert _invoke(env, *RUN).exit_code == 0
    assert len(_outbox_messages(tmp_path)) == 2


TASKS = """\
cadence: 1
name: Hostile tasks
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  note:
    subject: "Hello {{ contact.company }}"
    body: |
      Hi {{ contact.first_name }} {{ contact.last_name }},
      a note for {{ contact.company }}.
steps:
  - {id: note, day: 1, email: {template: note, send: task}}
"""
GOOD = [HOSTILE[-2], HOSTILE[-1], ("cy@initech.example", "Cy", "Ng", "Initech")]
TOO_LONG = "S" * 1500  # a subject a rep pasted: 1,500 characters, at most 1,000 are sent


def _schedule_tasks(folder: Path, env: dict[str, str]) -> None:
    """Launch GOOD with an email task each; the rep schedules them all for 11:00, the
    first with a subject the builder refuses."""
    cadence_path = write_cadence(folder, TASKS)
    launched = _invoke(
        env, "launch", str(cadence_path), "--contacts", str(_contacts(folder, GOOD)), *START
    )
    assert launched.exit_code == 0, launched.output
    assert _invoke(env, "run", "--once", "--now", "2026-03-02T10:00Z").exit_code == 0
    tasks = json.loads(_invoke(env, "tasks", "list", "-f", "json").output)
    body = folder / "edit.txt"
    body.write_text("Edited by the rep.\n", encoding="utf-8")
    for task in tasks:
        subject = TOO_LONG if task["contact"] == GOOD[0][0] else "A short subject"
        sent = _invoke(
            env, "tasks", "send", str(task["id"]), "--body-file", str(body),
            "--subject", subject, "--at", "2026-03-02T11:00Z", "--now", "2026-03-02T10:30Z",
        )  # fmt: skip
        assert sent.exit_code == 0, sent.output


def _answers(folder: Path) -> dict[str, tuple[str, str | None]]:
    """Per contact, the state and recorded answer of its email task's step run."""
    out: dict[str, tuple[str, str | None]] = {}
    with SqliteStore(folder / "state.db") as store:
        for enrolment_id in range(1, len(GOOD) + 1):
            (row,) = [r for r in store.step_runs(enrolment_id) if r.step_id == "note"]
            out[json.loads(row.contact)["email"]] = (row.state, row.answer)
    return out


RUN_11 = ["run", "--once", "--now", "2026-03-02T11:00Z"]


def test_a_message_that_cannot_be_built_fails_alone(tmp_path: Path) -> None:
    env = _env(tmp_path, f"outbox:{tmp_path / 'out'}")
    _schedule_tasks(tmp_path, env)
    result = _invoke(env, *RUN_11)
    assert "sent 2" in result.output and "failed 1" in result.output, result.output
    assert len(_outbox_messages(tmp_path)) == 2
    assert json.loads(_invoke(env, "status", "-f", "json").output)["unknown_sends"] == []
    answers = _answers(tmp_path)
    state, answer = answers[GOOD[0][0]]
    assert state == "failed" and answer is not None and "at most 1,000" in answer
    assert [answers[r[0]][0] for r in GOOD[1:]] == ["sent", "sent"]


def test_resend_after_a_crash_fails_the_bad_message_alone(tmp_path: Path) -> None:
    """Killed with the batch `sending`; `resolve --resend` of every unknown send, then a
    run: the good messages are delivered, the one that cannot be built fails alone."""
    env = _env(tmp_path, f"outbox:{tmp_path / 'out'}")
    _schedule_tasks(tmp_path, env)
    crashed = cadence_cmd(
        *RUN_11, "--lease", "0.2", env={**env, "CADENCE_FAULT": "after-sending-commit"}
    )
    assert crashed.returncode == -signal.SIGKILL
    time.sleep(0.4)  # the dead runner's lease runs out
    restart = _invoke(env, *RUN_11)
    # The row that cannot be built never reached `sending`: it is failed alone (recorded
    # before the others were handed over, or when claimed again), never in doubt.
    assert restart.exit_code == 1, restart.output
    assert _answers(tmp_path)[GOOD[0][0]][0] == "failed"
    unknown = json.loads(_invoke(env, "status", "-f", "json").output)["unknown_sends"]
    assert {u["contact"] for u in unknown} == {r[0] for r in GOOD[1:]}
    for u in unknown:
        assert _invoke(env, "resolve", str(u["key"]), "--resend").exit_code == 0
    result = _invoke(env, *RUN_11)
    assert result.exit_code == 0 and "sent 2" in result.output, result.output
    assert len(_outbox_messages(tmp_path)) == 2
    assert _answers(tmp_path)[GOOD[0][0]][0] == "failed"


# -- the task views: a subject or title is one line there too --------------------------

EVE = (
    "eve@evil.example",
    "Eve\nBcc: victim@evil.example",
    "Doe\rX-Lone: cr",
    "Acme\nX-Injected: yes",
)
EVE_SUBJECT = "Hello Acme X-Injected: yes"
EVE_TITLE = "Email Eve Bcc: victim@evil.example Doe X-Lone: cr: Hello Acme X-Injected: yes"


def _param(link: str, name: str) -> str:
    """The raw (still percent-encoded) value of query parameter `name` in `link`."""
    (value,) = [
        p.split("=", 1)[1] for p in link.split("?", 1)[1].split("&") if p.startswith(f"{name}=")
    ]
    return value


def test_task_views_show_subjects_and_titles_as_one_clean_line(tmp_path: Path) -> None:
    from urllib.parse import unquote

    from cadence_engine.engine.delivery import clean_body

    env = _env(tmp_path, f"outbox:{tmp_path / 'out'}")
    result = _invoke(
        env, "launch", str(write_cadence(tmp_path, TASKS)), "--contacts",
        str(_contacts(tmp_path, [EVE])), *START,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "tasks opened 1" in _invoke(env, *RUN).output
    # `tasks list`: one row per task, the title on it whole.
    listed = _invoke(env, "tasks", "list").output.splitlines()
    assert len(listed) == 2 and listed[1].endswith(f" {EVE_TITLE}"), listed
    (entry,) = json.loads(_invoke(env, "tasks", "list", "-f", "json").output)
    assert entry["title"] == EVE_TITLE
    # `tasks show -f json`: the subject as the message builder writes it.
    shown = json.loads(_invoke(env, "tasks", "show", str(entry["id"]), "-f", "json").output)
    assert (shown["subject"], shown["title"]) == (EVE_SUBJECT, EVE_TITLE)
    assert shown["subject"] == clean(f"Hello {EVE[3]}")
    links = shown["links"]
    assert _param(links["gmail"], "su") == "Hello%20Acme%20X-Injected%3A%20yes"
    assert _param(links["outlook"], "subject") == "Hello%20Acme%20X-Injected%3A%20yes"
    assert _param(links["mailto"], "subject") == "Hello%20Acme%20X-Injected%3A%20yes"
    # A body keeps its lines; in a mailto: every line break is %0D%0A (RFC 6068), even
    # where the contact data had a bare CR.
    body = clean_body(f"Hi {EVE[1]} {EVE[2]},\na note for {EVE[3]}.\n")
    assert shown["body"] == body
    mailto_body = _param(links["mailto"], "body")
    assert unquote(mailto_body) == body.replace("\n", "\r\n")
    assert mailto_body.count("%0D") == mailto_body.count("%0D%0A") == body.count("\n")
    assert unquote(_param(links["gmail"], "body")) == body
    # `tasks show`: the subject and title lines are whole; above the body (which keeps
    # its lines) no line comes from the contact data.
    text = _invoke(env, "tasks", "show", str(entry["id"])).output
    task, compose, rest = text.split("\n\n", 2)
    assert task.splitlines()[-1] == f"Title:   {EVE_TITLE}"
    assert compose.splitlines() == [f"To:      {EVE[0]}", f"Subject: {EVE_SUBJECT}"]
    assert rest.startswith(body) and "\r" not in text
    # `cadence preview` shows the same compose view for the contact.
    preview = _invoke(
        env, "preview", str(tmp_path / "cadence.yaml"), "--contacts",
        str(tmp_path / "contacts.json"), "--contact", EVE[0], *START[:2],
    ).output.splitlines()  # fmt: skip
    assert f"Subject: {EVE_SUBJECT}" in preview
    assert f"To: {clean(f'{EVE[1]} {EVE[2]}')} <{EVE[0]}>" in preview
    assert any(line.endswith(links["mailto"]) for line in preview)
