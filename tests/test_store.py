"""The SQLite store's own guarantees: pragmas, migrations, the append-only log, URLs.

What every store guarantees is tests/test_store_contract.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from cadence_engine.engine.errors import UsageError
from cadence_engine.engine.plan import Action
from cadence_engine.engine.store import NewEnrolment, NewStep, open_store
from cadence_engine.engine.store.migrations import SCHEMA_VERSION
from cadence_engine.engine.store.sqlite import SqliteStore
from tests.helpers.threads import together


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "state.db")
    s.save_version("h1", "C", "source: yaml", "{}", 0)
    yield s  # type: ignore[misc]
    s.close()


def test_pragmas_and_schema_version(store: SqliteStore) -> None:
    db = sqlite3.connect(store.path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()
    assert store.schema_version() == SCHEMA_VERSION


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    for _ in range(2):
        SqliteStore(tmp_path / "s.db").close()
    with SqliteStore(tmp_path / "s.db") as s:
        assert s.schema_version() == SCHEMA_VERSION


def test_postgres_url_is_a_clear_usage_error() -> None:
    with pytest.raises(UsageError, match="postgresql"):
        open_store("postgresql://localhost/cadence")


def test_sqlite_url_and_path_open_the_same_file(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'x.db'}") as a:
        a.save_version("h", "C", "", "{}", 0)
    with open_store(str(tmp_path / "x.db")) as b:
        assert "h" in b.versions()


def test_event_log_is_append_only(store: SqliteStore) -> None:
    email = "a@x.example"
    new = NewEnrolment(
        email=email,
        contact=json.dumps({"email": email, "fields": {}, "timezone": None, "row": 1}),
        uid="u1",
        unsubscribe_token="t1",
        steps=(NewStep("a", 0, 1, Action.SEND_EMAIL, "UTC", 100, None, "<a@x>"),),
    )
    store.launch("C", "h1", [new], 1)
    db = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE events SET kind = 'x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM events")
    finally:
        db.close()


# Another process may take this byte of the -shm exclusively only when no connection has
# the file open: SQLite's "dead man switch" (UNIX_SHM_DMS, offset 120 + 8 locks). Taking
# it, SQLite truncates the -shm under every mapping of it: a SIGBUS in a live reader.
_DMS_TAKEN_BY_ANOTHER_PROCESS = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)
except OSError:
    print("held")
else:
    print("free")
"""


def test_a_second_store_in_the_process_keeps_the_first_ones_shm_lock(tmp_path: Path) -> None:
    """The web server opens one store per thread: opening (or closing) one must never
    drop the POSIX locks another holds on the -shm (closing any descriptor of a file
    drops all of the process's locks on it)."""
    import subprocess
    import sys

    path = tmp_path / "state.db"

    def dms() -> str:
        shm = f"{path}-shm"
        out = subprocess.run(
            [sys.executable, "-c", _DMS_TAKEN_BY_ANOTHER_PROCESS, shm],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return out.stdout.strip()

    first = SqliteStore(path)
    try:
        first.versions()
        assert dms() == "held"
        second = SqliteStore(path)
        second.versions()
        assert dms() == "held"
        first.versions()  # the first connection still reads through its mapping
        assert dms() == "held"
        second.close()
        assert dms() == "held"
        first.versions()
    finally:
        first.close()


def test_connections_opening_a_new_store_at_once_all_open_it(tmp_path: Path) -> None:
    """Runners started together on a file that does not exist yet. Switching the new file
    to WAL is a mode change for which SQLite runs no busy handler: the loser used to get
    `database is locked` at once, reported as a write lock held for 60 s."""
    errors: list[BaseException] = []
    for attempt in range(40):
        path = tmp_path / f"s{attempt}.db"
        start = threading.Barrier(4)

        def open_it(path: Path = path, start: threading.Barrier = start) -> None:
            start.wait()
            with SqliteStore(path) as store:
                assert store.schema_version() == SCHEMA_VERSION

        errors += together(*[open_it] * 4)
    assert errors == []


def _store_of_version(path: Path, version: int) -> Path:
    """A SQLite store built by the first `version` migrations, with one cadence version."""
    from cadence_engine.engine.store.migrations import MIGRATIONS
    from cadence_engine.engine.store.sqlite import _statements

    with closing(sqlite3.connect(path)) as db:
        for number, script in MIGRATIONS[:version]:
            for statement in _statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute("INSERT INTO cadence_versions VALUES ('h1', 'C', 'source', '{}', 0)")
        db.commit()
    with SqliteStore(path) as store:  # opening it migrates it
        assert store.schema_version() == SCHEMA_VERSION > version
        assert "h1" in store.versions()
    return path


def _names(path: Path, query: str) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {r[0] for r in db.execute(query)}


def test_a_version_4_store_gains_the_sent_unsubscribe_link_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = _store_of_version(tmp_path / "v4.db", 4)
    columns = _names(path, "SELECT name FROM pragma_table_info('step_runs')")
    assert "unsubscribe_url" in columns


def test_a_version_3_store_loses_the_fence_index_and_keeps_its_rows(tmp_path: Path) -> None:
    path = _store_of_version(tmp_path / "v3.db", 3)
    names = _names(path, "SELECT name FROM sqlite_master WHERE type = 'index'")
    assert "step_runs_fence" not in names and "step_runs_due" in names
