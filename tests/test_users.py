"""`cadence users add|list|remove|link` and the checks of `cadence serve`'s settings."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.web.app import close_app, create_app
from tests.helpers.web_world import csrf_of


def _cli(db: Path | str, *args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(
        cadence, list(args), env={"CADENCE_DB": str(db), **(env or {})}, catch_exceptions=False
    )
    assert result.exit_code == code, result.output
    return result.output


def test_add_list_link_remove(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    out = _cli(db, "users", "add", "Dana@Acme.example", "--name", "Dana Reyes",
               "--timezone", "Europe/Amsterdam")  # fmt: skip
    assert "added dana@acme.example (rep, Europe/Amsterdam)" in out
    _cli(db, "users", "add", "boss@acme.example", "--admin")
    listed = json.loads(_cli(db, "users", "list", "-f", "json"))
    assert listed == [
        {"email": "boss@acme.example", "name": "", "admin": True, "timezone": "UTC"},
        {"email": "dana@acme.example", "name": "Dana Reyes", "admin": False,
         "timezone": "Europe/Amsterdam"},
    ]  # fmt: skip
    assert "dana@acme.example" in _cli(db, "users", "list")
    link, note = _cli(db, "users", "link", "DANA@acme.example").splitlines()
    assert note.startswith("one sign-in for DANA@acme.example, valid for 15 minutes (until ")
    assert link.startswith("http://127.0.0.1:8080/signin/") and len(link) > 60
    based_env = {"CADENCE_BASE_URL": "https://cadence.example.com/"}
    based = _cli(db, "users", "link", "dana@acme.example", env=based_env).splitlines()[0]
    assert based.startswith("https://cadence.example.com/signin/")
    assert based.rsplit("/", 1)[1] != link.rsplit("/", 1)[1]
    assert _cli(db, "users", "remove", "dana@acme.example") == "removed dana@acme.example\n"
    assert "dana" not in _cli(db, "users", "list")


def test_the_database_keeps_only_hashes_of_sign_in_links(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "state.db"
    _cli(db, "users", "add", "dana@acme.example")
    token = _cli(db, "users", "link", "dana@acme.example").splitlines()[0].rsplit("/", 1)[1]
    with sqlite3.connect(db) as conn:
        stored = [r[0] for r in conn.execute("SELECT token_hash FROM sign_in_tokens")]
    assert token not in stored and len(stored) == 1 and len(stored[0]) == 64


def test_users_and_sign_in_on_a_postgresql_store(postgres_url: str) -> None:
    import psycopg

    out = _cli(postgres_url, "users", "add", "Dana@Acme.example", "--name", "Dana Reyes",
               "--timezone", "Europe/Amsterdam")  # fmt: skip
    assert "added dana@acme.example (rep, Europe/Amsterdam)" in out
    _cli(postgres_url, "users", "add", "boss@acme.example", "--admin")
    _cli(postgres_url, "users", "add", "dana@acme.example", code=2)
    listed = json.loads(_cli(postgres_url, "users", "list", "-f", "json"))
    assert [(u["email"], u["admin"]) for u in listed] == [
        ("boss@acme.example", True),
        ("dana@acme.example", False),
    ]
    link = _cli(postgres_url, "users", "link", "dana@acme.example").splitlines()[0]
    path = link.removeprefix("http://127.0.0.1:8080")
    assert path.startswith("/signin/")
    with psycopg.connect(postgres_url) as conn:
        stored = [r[0] for r in conn.execute("SELECT token_hash FROM sign_in_tokens")]
    assert path.rsplit("/", 1)[1] not in stored and len(stored) == 1

    app = create_app(postgres_url, base="http://127.0.0.1:8080", clock=lambda: datetime.now(UTC))
    try:
        client = app.test_client()
        assert client.get("/").status_code == 303
        page = client.get(path)
        assert page.status_code == 200
        assert client.post(path, data={"csrf": csrf_of(page.text)}).status_code == 303
        home = client.get("/")
        assert home.status_code == 200 and "Dana Reyes" in home.text
        assert client.get("/feed").status_code == 200
        again = app.test_client()
        refused = again.post(path, data={"csrf": csrf_of(again.get(path).text)})
        assert refused.status_code == 403 and "used or has expired" in refused.text
        client.post("/signout", data={"csrf": csrf_of(client.get("/").text)})
        assert client.get("/").status_code == 303
    finally:
        close_app(app)
    assert _cli(postgres_url, "users", "remove", "dana@acme.example") == (
        "removed dana@acme.example\n"
    )
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (0,)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["users", "add", "not-an-address"], 2, "EMAIL 'not-an-address' is not an email address"),
        (["users", "add", "a@b.example", "--timezone", "Mars/Base"], 2,
         "--timezone 'Mars/Base' is not an IANA time zone"),
        (["users", "add", "a@@b.example"], 2, "EMAIL 'a@@b.example' is not an email address"),
        (["users", "add", "a@b.example", "--timezone", "EST"], 2,
         "--timezone 'EST' is an abbreviation"),
        (["users", "add", "a@b.example", "--timezone", "Etc/GMT+5"], 2,
         "--timezone 'Etc/GMT+5' is a fixed UTC offset"),
        (["users", "remove", "nobody@acme.example"], 1, "no user nobody@acme.example"),
        (["users", "link", "nobody@acme.example"], 1, "no user nobody@acme.example"),
    ],
    ids=["bad-email", "bad-zone", "double-at", "abbreviation", "fixed-offset", "remove-unknown",
         "link-unknown"],
)  # fmt: skip
def test_bad_input_is_a_clear_error(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    result = CliRunner().invoke(cadence, args, env={"CADENCE_DB": str(tmp_path / "s.db")})
    assert result.exit_code == code
    assert message in result.output and "Traceback" not in result.output


def test_adding_a_user_twice_is_a_usage_error(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _cli(db, "users", "add", "dana@acme.example")
    out = _cli(db, "users", "add", "dana@acme.example", code=2)
    assert "user dana@acme.example already exists" in out


@pytest.mark.parametrize(
    "base", ["ftp://x.example", "cadence.example.com", "https://x.example/?a=1"]
)
def test_a_malformed_base_url_is_a_usage_error(tmp_path: Path, base: str) -> None:
    db = tmp_path / "state.db"
    _cli(db, "users", "add", "dana@acme.example")
    for args in (["users", "link", "dana@acme.example"], ["serve", "--port", "0"]):
        out = _cli(db, *args, code=2, env={"CADENCE_BASE_URL": base})
        assert "CADENCE_BASE_URL" in out and "is not a base URL" in out


def test_serve_on_a_port_in_use_is_a_usage_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _cli(tmp_path / "state.db", "serve", "--port", str(port), code=2)
    assert f"cannot listen on 127.0.0.1:{port}" in out and "--port" in out
