"""Unsubscribe links, their settings' checks, and unsubscribing by token (engine.unsubscribe)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.errors import NotFound, UsageError
from cadence_engine.engine.store import open_store
from cadence_engine.engine.unsubscribe import check_environment, links, unsubscribe_by_token

TOKEN = "AbC_dEf-123456789012"
NOW = datetime(2026, 3, 3, 12, tzinfo=UTC)


def test_mailto_carries_the_token_in_address_and_subject() -> None:
    found = links("dana@acme.example", TOKEN, {})
    assert found.https is None
    assert found.mailto == (
        f"mailto:dana+unsubscribe-{TOKEN}@acme.example?subject=unsubscribe%20{TOKEN}"
    )
    assert found.primary == found.mailto


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CADENCE_BASE_URL": "https://c.example.com/"}, f"https://c.example.com/u/{TOKEN}"),
        ({"CADENCE_BASE_URL": "http://127.0.0.1:8080"}, None),
        ({"CADENCE_UNSUBSCRIBE_URL": "https://u.example/?t="}, f"https://u.example/?t={TOKEN}"),
        (
            {
                "CADENCE_UNSUBSCRIBE_URL": "https://u.example/{token}/stop",
                "CADENCE_BASE_URL": "https://c.example.com",
            },
            f"https://u.example/{TOKEN}/stop",
        ),
    ],
    ids=["base-url", "http-base-not-used", "appended", "placeholder-wins-over-base"],
)
def test_one_click_url(env: dict[str, str], expected: str | None) -> None:
    assert links("dana@acme.example", TOKEN, env).https == expected


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("CADENCE_UNSUBSCRIBE_URL", "http://u.example/?t=", "is http://"),
        ("CADENCE_BASE_URL", "http://cadence.example.com", "is http://"),
        ("CADENCE_UNSUBSCRIBE_URL", "u.example/unsubscribe", "is not an https:// URL"),
        ("CADENCE_UNSUBSCRIBE_URL", "https://", "has no host"),
        ("CADENCE_BASE_URL", "https://c.example.com:99999", "is not a URL"),
        ("CADENCE_UNSUBSCRIBE_URL", "https://u.example/a b", "spaces"),
        ("CADENCE_BASE_URL", "https://c.example.com/app?x=1", "is not a base URL"),
        ("CADENCE_BASE_URL", "https://c.example.com/#top", "is not a base URL"),
    ],
)
def test_bad_urls_are_usage_errors(name: str, value: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem) as caught:
        check_environment({name: value})
    assert name in str(caught.value)


def test_good_urls_pass() -> None:
    check_environment(
        {
            "CADENCE_UNSUBSCRIBE_URL": "https://u.example/{token}",
            "CADENCE_BASE_URL": "https://c.example.com",
        }
    )


CADENCE = """\
cadence: 1
name: Unsub
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  hello: {subject: "Hello", body: "Stop: {{ unsubscribe_url }}"}
steps:
  - {id: hello, day: 1, email: {template: hello, send: {at: "09:00"}}}
"""


@pytest.fixture
def launched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CADENCE_DB", str(tmp_path / "cadence.db"))
    monkeypatch.setenv("CADENCE_TRANSPORT", f"outbox:{tmp_path / 'outbox'}")
    monkeypatch.delenv("CADENCE_BASE_URL", raising=False)
    monkeypatch.delenv("CADENCE_UNSUBSCRIBE_URL", raising=False)
    (tmp_path / "c.yaml").write_text(CADENCE, encoding="utf-8")
    (tmp_path / "people.csv").write_text("email\nann@example.com\nben@example.com\n")
    result = CliRunner().invoke(
        cadence,
        ["launch", "c.yaml", "--contacts", "people.csv", "--start", "2026-03-02T00:00Z",
         "--now", "2026-03-02T00:00Z"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return tmp_path


def _token(folder: Path, email: str) -> str:
    with sqlite3.connect(folder / "cadence.db") as db:
        (token,) = db.execute(
            "SELECT unsubscribe_token FROM enrolments WHERE email = ?", (email,)
        ).fetchone()
    return str(token)


def test_sent_messages_carry_both_links_and_one_click(
    launched: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CADENCE_BASE_URL", "https://cadence.example.com")
    result = CliRunner().invoke(cadence, ["run", "--once", "--now", "2026-03-02T10:00Z"])
    assert result.exit_code == 0, result.output
    token = _token(launched, "ann@example.com")
    [sent] = [
        m
        for m in (
            message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in (launched / "outbox").glob("*.eml")
        )
        if "ann@example.com" in str(m["To"])
    ]
    assert str(sent["List-Unsubscribe"]) == (
        f"<https://cadence.example.com/u/{token}>, "
        f"<mailto:dana+unsubscribe-{token}@acme.example?subject=unsubscribe%20{token}>"
    )
    assert str(sent["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert f"https://cadence.example.com/u/{token}" in sent.get_content()


def test_an_http_unsubscribe_url_stops_the_run_before_anything_is_sent(
    launched: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CADENCE_UNSUBSCRIBE_URL", "http://u.example/?t=")
    result = CliRunner().invoke(cadence, ["run", "--once", "--now", "2026-03-02T10:00Z"])
    assert result.exit_code == 2
    assert "CADENCE_UNSUBSCRIBE_URL" in result.output and "https" in result.output
    assert not (launched / "outbox").exists() or not list((launched / "outbox").glob("*.eml"))


def test_event_unsubscribe_by_token(launched: Path) -> None:
    token = _token(launched, "ann@example.com")
    result = CliRunner().invoke(cadence, ["event", "unsubscribe", "--token", token])
    assert result.exit_code == 0, result.output
    assert "unsubscribe for ann@example.com" in result.output
    with sqlite3.connect(launched / "cadence.db") as db:
        states = dict(db.execute("SELECT email, state FROM enrolments"))
        sources = db.execute(
            "SELECT kind, source FROM events WHERE kind = 'unsubscribe'"
        ).fetchall()
    assert states == {"ann@example.com": "unsubscribed", "ben@example.com": "active"}
    assert sources == [("unsubscribe", "command")]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["event", "unsubscribe", "--token", "no-such-token"], 1, "no enrolment has"),
        (["event", "reply", "--token", "x"], 2, "--token only goes with"),
        (["event", "unsubscribe", "--token", "x", "--contact", "a@b.c"], 2, "exactly one"),
        (["event", "unsubscribe"], 2, "exactly one"),
    ],
    ids=["unknown", "reply", "both", "neither"],
)
def test_event_token_errors(launched: Path, args: list[str], code: int, message: str) -> None:
    result = CliRunner().invoke(cadence, args)
    assert result.exit_code == code, result.output
    assert message in result.output


def test_unsubscribe_by_token_is_idempotent_and_keeps_its_source(launched: Path) -> None:
    token = _token(launched, "ben@example.com")
    store = open_store(str(launched / "cadence.db"))
    try:
        first = unsubscribe_by_token(store, token, source="web", now=NOW)
        second = unsubscribe_by_token(store, token.lower(), source="web", now=NOW)
        with pytest.raises(NotFound):
            unsubscribe_by_token(store, "", source="web", now=NOW)
    finally:
        store.close()
    assert first.email == second.email == "ben@example.com"
    assert first.result.new and not second.result.new
    with sqlite3.connect(launched / "cadence.db") as db:
        rows = db.execute("SELECT source FROM events WHERE kind = 'unsubscribe'").fetchall()
    assert rows == [("web",)]


def test_reply_by_hand_is_logged_as_a_command(launched: Path) -> None:
    result = CliRunner().invoke(cadence, ["event", "reply", "--contact", "ann@example.com"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(launched / "cadence.db") as db:
        rows = db.execute("SELECT kind, source FROM events WHERE kind = 'reply'").fetchall()
    assert rows == [("reply", "command")]
