"""`cadence store migrate --to URL`: the whole state, SQLite → PostgreSQL and back."""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.store import open_store
from cadence_engine.engine.users import open_users, session_of, sign_in
from tests.helpers.postgres import Server

from .conftest import CADENCES

EXAMPLE = str(CADENCES / "heads-of-platform.yaml")
CONTACTS = str(CADENCES / "contacts.csv")


def cli(*args: str, db: str, outbox: Path) -> str:
    result = CliRunner().invoke(
        cadence,
        list(args),
        env={"CADENCE_DB": db, "CADENCE_TRANSPORT": f"outbox:{outbox}", "NO_COLOR": "1"},
        catch_exceptions=False,
    )
    assert result.exit_code in (0, 1), result.output
    return result.output


def demo_state(db: str, outbox: Path) -> None:
    """The demo's Monday to Wednesday: launch, sends, tasks opened, one worked, a reply."""
    cli(
        "launch", EXAMPLE, "--contacts", CONTACTS, "--start", "2026-03-02T00:00Z",
        "--send-at", "09:00", "--now", "2026-03-02T00:00Z", db=db, outbox=outbox,
    )  # fmt: skip
    for at in ("2026-03-02T09:05Z", "2026-03-02T17:05Z", "2026-03-03T14:05Z"):
        cli("run", "--once", "--now", at, db=db, outbox=outbox)
    task = json.loads(cli("tasks", "list", "-f", "json", db=db, outbox=outbox))[0]["id"]
    cli("tasks", "done", str(task), "--now", "2026-03-04T12:00Z", db=db, outbox=outbox)
    cli(
        "event", "reply", "--contact", "ben.smith@globex.example", "--now",
        "2026-03-04T12:00Z", db=db, outbox=outbox,
    )  # fmt: skip


def everything(url: str) -> tuple[object, ...]:
    """The state as the contract shows it, for comparing two stores."""
    with open_store(url) as store:
        enrolments = store.enrolments()
        return (
            store.versions(),
            enrolments,
            store.step_runs_of(e.id for e in enrolments),
            store.events(),
            [store.is_suppressed(e.email) for e in enrolments],
        )


def link_token(db: str, email: str, outbox: Path) -> str:
    return cli("users", "link", email, db=db, outbox=outbox).splitlines()[0].rsplit("/", 1)[1]


def test_sqlite_to_postgres_and_back_keeps_everything(tmp_path: Path, postgres_url: str) -> None:
    sqlite = str(tmp_path / "cadence.db")
    back = str(tmp_path / "back.db")
    outbox = tmp_path / "outbox"
    demo_state(sqlite, outbox)
    cli("users", "add", "dana@acme.example", "--name", "Dana", "--timezone", "Europe/Paris",
        db=sqlite, outbox=outbox)  # fmt: skip
    cli("users", "add", "boss@acme.example", "--admin", db=sqlite, outbox=outbox)
    unused = link_token(sqlite, "dana@acme.example", outbox)
    now = datetime.now(UTC)
    with open_users(sqlite) as users:
        people = users.users()
        signed_in = sign_in(users, link_token(sqlite, "boss@acme.example", outbox), now)
    assert signed_in is not None
    session_id, session = signed_in
    status = ("status", "-f", "json", "--now", "2026-03-06T23:59Z")
    before = cli(*status, db=sqlite, outbox=outbox)

    out = cli("store", "migrate", "--to", postgres_url, db=sqlite, outbox=outbox)
    assert "counts verified" in out
    assert cli(*status, db=postgres_url, outbox=outbox) == before
    assert everything(postgres_url) == everything(sqlite)
    with open_users(postgres_url) as users:
        assert users.users() == people  # ids kept
        assert session_of(users, session_id, now) == session
        # The link not used before the copy signs in once on the copy.
        on_pg = sign_in(users, unused, now)
        assert on_pg is not None and on_pg[1].user.email == "dana@acme.example"
        assert sign_in(users, unused, now) is None
        cli("users", "add", "eli@acme.example", db=postgres_url, outbox=outbox)

    cli("store", "migrate", "--to", back, db=postgres_url, outbox=outbox)
    assert cli(*status, db=back, outbox=outbox) == before
    assert everything(back) == everything(sqlite)
    with open_users(back) as users:
        assert [u.email for u in users.users()] == [
            "boss@acme.example",
            "dana@acme.example",
            "eli@acme.example",
        ]
        assert users.users()[:2] == people
        assert session_of(users, session_id, now) == session
        assert session_of(users, on_pg[0], now) == on_pg[1]
        assert sign_in(users, unused, now) is None  # spent on PostgreSQL, spent here


def test_the_copy_on_postgres_goes_on_as_the_original_would(
    tmp_path: Path, postgres_url: str
) -> None:
    """After the copy, the same work on both stores: the same reports, the same emails."""
    sqlite = str(tmp_path / "cadence.db")
    outbox = tmp_path / "outbox"
    demo_state(sqlite, outbox)
    cli("store", "migrate", "--to", postgres_url, db=sqlite, outbox=outbox)
    pg_outbox = tmp_path / "pg-outbox"
    shutil.copytree(outbox, pg_outbox)
    reports = []
    for db, box in ((sqlite, outbox), (postgres_url, pg_outbox)):
        for task in json.loads(cli("tasks", "list", "-f", "json", db=db, outbox=box)):
            cli("tasks", "done", str(task["id"]), "--now", "2026-03-05T08:00Z", db=db, outbox=box)
        runs = [
            cli("run", "--once", "-f", "json", "--now", at, db=db, outbox=box)
            for at in ("2026-03-05T09:05Z", "2026-03-05T17:05Z", "2026-03-06T17:05Z")
        ]
        status = cli("status", "-f", "json", "--now", "2026-03-06T23:59Z", db=db, outbox=box)
        reports.append((runs, status))
    assert reports[0] == reports[1]
    assert sum(json.loads(r)["sent"] for r in reports[0][0]) > 0
    assert sorted(p.name for p in outbox.iterdir()) == sorted(p.name for p in pg_outbox.iterdir())


def test_a_non_empty_target_is_refused(tmp_path: Path, postgres_url: str) -> None:
    sqlite = str(tmp_path / "cadence.db")
    outbox = tmp_path / "outbox"
    demo_state(sqlite, outbox)
    cli("store", "migrate", "--to", postgres_url, db=sqlite, outbox=outbox)
    result = CliRunner().invoke(cadence, ["store", "migrate", "--db", sqlite, "--to", postgres_url])
    assert result.exit_code == 2
    assert "is not empty" in result.output and "nothing was copied" in result.output
    assert "secret" not in result.output


def test_a_missing_source_is_a_usage_error(tmp_path: Path) -> None:
    for source in (str(tmp_path / "none.db"), f"sqlite:///{tmp_path / 'none.db'}"):
        result = CliRunner().invoke(
            cadence, ["store", "migrate", "--db", source, "--to", str(tmp_path / "n.db")]
        )
        assert result.exit_code == 2
        assert "no state store there" in result.output
        assert list(tmp_path.iterdir()) == []  # neither the source nor the target made


def test_a_damaged_source_is_refused_and_nothing_is_copied(tmp_path: Path) -> None:
    source = tmp_path / "cadence.db"
    demo_state(str(source), tmp_path / "outbox")
    with source.open("r+b") as f:  # dd if=/dev/urandom bs=4096 seek=5 count=3 conv=notrunc
        f.seek(5 * 4096)
        f.write(random.Random(3).randbytes(3 * 4096))
    target = tmp_path / "copy.db"
    result = CliRunner().invoke(
        cadence, ["store", "migrate", "--db", str(source), "--to", str(target)]
    )
    assert result.exit_code == 1, result.output
    assert f"error: the source store {source} is damaged: table " in result.output
    assert "nothing was copied" in result.output and "counts verified" not in result.output
    assert not target.exists()


def test_an_unreachable_target_names_to_in_its_hint(
    tmp_path: Path, postgres_server: Server
) -> None:
    sqlite = str(tmp_path / "cadence.db")
    demo_state(sqlite, tmp_path / "outbox")
    missing = postgres_server.dsn_for("no_such_database")
    result = CliRunner().invoke(cadence, ["store", "migrate", "--db", sqlite, "--to", missing])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f'error: cannot connect to PostgreSQL at {missing}: database "no_such_database" '
        "does not exist",
        "  hint: check --to (host, port, database, user, password) and that the server "
        "accepts connections",
    ]
    # The source unreachable: the hint names where it came from.
    result = CliRunner().invoke(cadence, ["store", "migrate", "--db", missing, "--to", sqlite])
    assert result.exit_code == 2
    assert "hint: check CADENCE_DB / --db (host," in result.output
