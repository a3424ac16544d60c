"""The state store is checked when it is opened, and by `cadence store check` (issue 8,
defect 6): an empty file, an in-memory database, a foreign or altered schema and damaged
pages are clear errors, never a silently new store or a later crash."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cadence_engine.cli import cadence
from tests.conftest import CADENCES

LAUNCH = [
    "launch", str(CADENCES / "heads-of-platform.yaml"), "--contacts",
    str(CADENCES / "contacts.csv"), "--send-at", "09:00", "--now", "2026-03-02T08:00Z",
]  # fmt: skip
REPLY = ["event", "reply", "--contact", "ava.nakamura@northwind.example"]


def _cli(args: list[str], db: Path | str) -> Result:
    result = CliRunner().invoke(cadence, args, env={"CADENCE_DB": str(db)})
    assert "Traceback" not in result.output and "internal error" not in result.output
    return result


@pytest.fixture
def launched(tmp_path: Path) -> Path:
    db = tmp_path / "state.db"
    assert _cli(LAUNCH, db).exit_code == 0
    return db


def test_an_existing_empty_file_is_refused_and_a_new_path_is_fine(tmp_path: Path) -> None:
    empty = tmp_path / "cadence.db"
    empty.touch()
    result = _cli(LAUNCH, empty)
    assert result.exit_code == 2, result.output
    assert "is an empty file" in result.output and f"rm {empty}" in result.output
    assert empty.stat().st_size == 0  # nothing was enrolled into it
    fresh = tmp_path / "new.db"
    assert _cli(LAUNCH, fresh).exit_code == 0


@pytest.mark.parametrize("db", [":memory:", "file::memory:?cache=shared"])
def test_an_in_memory_store_is_refused(db: str) -> None:
    result = _cli(["status"], db)
    assert result.exit_code == 2 and "in-memory database" in result.output, result.output


def test_an_altered_schema_version_is_named(launched: Path) -> None:
    with closing(sqlite3.connect(launched)) as db:
        db.execute("PRAGMA user_version = -5")
    result = _cli(["status"], launched)
    assert result.exit_code == 1, result.output
    assert "schema version -5" in result.output and "restore" in result.output


def test_a_foreign_sqlite_database_is_not_migrated(tmp_path: Path) -> None:
    other = tmp_path / "app.db"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE users (id INTEGER)")
    result = _cli(["status"], other)
    assert result.exit_code == 2 and "not a cadence state store" in result.output
    with closing(sqlite3.connect(other)) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"users"}  # untouched


def test_a_dropped_table_is_found_at_open_and_by_store_check(launched: Path) -> None:
    with closing(sqlite3.connect(launched)) as db:
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("DROP TABLE step_runs")
    result = _cli(REPLY, launched)
    assert result.exit_code == 1, result.output
    assert "is damaged: table step_runs is missing" in result.output
    check = _cli(["store", "check"], launched)
    assert check.exit_code == 1
    assert "damaged: table step_runs is missing" in check.output
    assert "damaged: index step_runs_due is missing" in check.output


def test_store_check_passes_a_whole_store(launched: Path) -> None:
    result = _cli(["store", "check"], launched)
    assert result.exit_code == 0 and "ok" in result.output, result.output


def test_store_check_names_damaged_pages(launched: Path) -> None:
    with closing(sqlite3.connect(launched)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'step_runs_due'"
        ).fetchone()
    assert root < pages
    with launched.open("r+b") as f:  # wreck one index's root page, keep the rest
        f.seek((root - 1) * size)
        f.write(b"\x0d" + b"\xff" * (size - 1))
    result = _cli(["store", "check"], launched)
    assert result.exit_code == 1, result.output
    assert "damaged:" in result.output and "step_runs_due" in result.output


GONE_MID_RUN = """
import os, shutil, sys
from datetime import UTC, datetime
from pathlib import Path
from tests.helpers.runner_env import write_cadence, write_contacts
from cadence_engine.engine.errors import CadenceError
from cadence_engine.engine.launch import launch
from cadence_engine.engine.run.clock import Clock
from cadence_engine.engine.run.loop import Runner
from cadence_engine.engine.store import open_store
from cadence_engine.engine.transports.outbox import OutboxTransport

folder, how = Path(sys.argv[1]), sys.argv[2]
db = folder / "s.db"
with open_store(str(db)) as store:
    launch(store, write_cadence(folder), write_contacts(folder, 3),
           now=datetime(2026, 3, 2, 8, tzinfo=UTC), start="now")
    if how == "deleted":  # rm s.db s.db-wal s.db-shm
        for f in folder.glob("s.db*"):
            f.unlink()
    else:  # another store moved into its place
        with open_store(str(folder / "other.db")):
            pass
        os.replace(folder / "other.db", db)
    try:
        Runner(store, OutboxTransport(folder / "o"),
               clock=Clock(datetime(2026, 3, 2, 10, tzinfo=UTC))).run_once()
    except CadenceError as exc:
        print(f"exit {exc.exit_code}: {exc}")
"""


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_store_deleted_or_replaced_mid_run_stops_it_before_the_next_transaction(
    tmp_path: Path, how: str
) -> None:
    import subprocess
    import sys

    from tests.helpers.runner_env import ROOT

    done = subprocess.run(
        [sys.executable, "-c", GONE_MID_RUN, str(tmp_path), how],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, (done.returncode, done.stderr)
    db = tmp_path / "s.db"
    assert (
        f"exit 2: state store {db} was deleted or replaced while this command ran; "
        f"{db} {'is gone' if how == 'deleted' else 'is another file now'}"
    ) in done.stdout
    assert "restore it from a backup" not in done.stdout  # the hint names the file
    assert f"hint: restore {db} from a backup, or point CADENCE_DB" in done.stdout
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())  # none sent
    if how == "replaced":  # the store now in its place was left as it was, -wal and all
        assert _cli(["store", "check"], db).exit_code == 0


def test_store_check_names_a_dropped_trigger(launched: Path) -> None:
    with closing(sqlite3.connect(launched)) as db:
        db.execute("DROP TRIGGER events_no_delete")
    check = _cli(["store", "check"], launched)
    assert check.exit_code == 1, check.output
    assert "damaged: trigger events_no_delete is missing" in check.output
    assert "events_no_update" not in check.output  # the one still there is not named
    # Opening it for work finds it too: the event log is no longer append-only.
    result = _cli(REPLY, launched)
    assert result.exit_code == 1 and "trigger events_no_delete is missing" in result.output


def test_store_check_names_a_trigger_that_no_longer_enforces(launched: Path) -> None:
    with closing(sqlite3.connect(launched)) as db:
        db.execute("DROP TRIGGER events_no_update")
        db.execute("CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT 1; END")
    check = _cli(["store", "check"], launched)
    assert check.exit_code == 1, check.output
    assert "damaged: trigger events_no_update is not the one the migrations create" in (
        check.output
    )


def test_store_check_of_a_missing_path_is_a_usage_error_and_creates_nothing(
    tmp_path: Path,
) -> None:
    typo = tmp_path / "typo.db"
    result = _cli(["store", "check"], typo)
    assert result.exit_code == 2, result.output
    assert f"no state store at {typo}" in result.output
    assert list(tmp_path.iterdir()) == []  # no new, empty store, no -wal or -shm


def test_store_check_says_a_truncated_file_is_truncated(launched: Path) -> None:
    size = launched.stat().st_size
    with launched.open("r+b") as f:
        f.truncate(size // 2)
    result = _cli(["store", "check"], launched)
    assert result.exit_code == 1, result.output
    assert f"damaged: the file is truncated: {size // 2} bytes" in result.output
    assert "damaged: table step_runs: " in result.output  # what can be named, is
    assert "`cadence store check`" not in result.output  # it is store check: no pointing back
    assert f"sqlite3 {launched} .recover" in result.output


def test_store_check_says_unreadable_first_pages(launched: Path) -> None:
    with launched.open("r+b") as f:  # the schema's page: every table's root is on it
        f.seek(100)
        f.write(b"\xff" * 3996)
    result = _cli(["store", "check"], launched)
    assert result.exit_code == 1, result.output
    assert "damaged: its first pages (the schema, sqlite_master) are unreadable" in result.output
    assert "`cadence store check`" not in result.output


def test_a_store_on_a_full_disk_says_the_disk_is_full(launched: Path, tmp_path: Path) -> None:
    import subprocess

    disk = tmp_path / "small"
    disk.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    ).returncode:
        pytest.skip("needs to mount a small tmpfs (root)")
    try:
        db = disk / "state.db"
        db.write_bytes(launched.read_bytes())  # closed: no -wal or -shm beside it
        with (disk / "fill").open("wb", buffering=0) as f, pytest.raises(OSError):
            while True:  # until ENOSPC
                f.write(b"\0" * 4096)
        result = _cli(["status"], db)
        assert result.exit_code == 1, result.output
        assert f"cannot use state store {db}: the disk is full" in result.output
        assert "regular file on a local disk" not in result.output
        (disk / "fill").unlink()
        assert _cli(["status"], db).exit_code == 0  # with room again it goes on
    finally:
        subprocess.run(["umount", str(disk)], check=True)
