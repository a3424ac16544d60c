"""`cadence store migrate --to URL`: copy the whole state from one store to another.

Versions, enrolments, step runs (with their ids, states, fences and leases), the event
log, suppressions, signals, sender days, mailbox cursors, inbound dedupe keys and the
Command Center's users (with their sign-in links and sessions) go over as they are, ids
kept, in one transaction on the target, which must be empty. The counts of every table
are compared after the copy; a difference is an error and nothing is kept.

Both stores hold the same logical tables; times are integer seconds on SQLite and
`timestamptz` on PostgreSQL, converted here. A column the source lacks (an older
schema) takes the target's default.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import CadenceError, InputError, UsageError

# Logical tables in the order they can be inserted (references first): name, columns,
# and which columns are instants (integer seconds on SQLite).
TABLES: tuple[tuple[str, tuple[str, ...], frozenset[str]], ...] = (
    (
        "cadence_versions",
        ("hash", "name", "source", "data", "created_utc"),
        frozenset({"created_utc"}),
    ),
    (
        "enrolments",
        (
            "id",
            "uid",
            "cadence_name",
            "cadence_hash",
            "email",
            "contact",
            "unsubscribe_token",
            "state",
            "success",
            "launched_utc",
            "ended_utc",
            "paused_utc",
            "paused_until",
        ),
        frozenset({"launched_utc", "ended_utc", "paused_utc", "paused_until"}),
    ),
    (
        "step_runs",
        (
            "id",
            "enrolment_id",
            "step_id",
            "step_index",
            "day",
            "action",
            "zone",
            "due_utc",
            "planned_utc",
            "thread_step_id",
            "message_id",
            "state",
            "fence",
            "lease_until",
            "attempts",
            "sent_utc",
            "done_utc",
            "by_hand",
            "subject",
            "body",
            "answer",
            "unsubscribe_url",
        ),
        frozenset({"due_utc", "planned_utc", "sent_utc", "done_utc", "lease_until"}),
    ),
    (
        "events",
        ("id", "at_utc", "kind", "email", "enrolment_id", "step_run_id", "detail", "source"),
        frozenset({"at_utc"}),
    ),
    ("suppressions", ("email", "reason", "at_utc"), frozenset({"at_utc"})),
    ("signals", ("kind", "email", "cadence_name", "at_utc"), frozenset({"at_utc"})),
    ("sender_days", ("sender", "day", "sent"), frozenset()),
    ("mailbox_cursors", ("mailbox", "uidvalidity", "last_uid"), frozenset()),
    ("inbound_seen", ("key", "mailbox", "at_utc"), frozenset({"at_utc"})),
    # The Command Center's users, their sign-in links and sessions (hashes only).
    (
        "users",
        ("id", "email", "name", "admin", "timezone", "created_utc"),
        frozenset({"created_utc"}),
    ),
    (
        "sign_in_tokens",
        ("token_hash", "user_id", "expires_utc", "used_utc"),
        frozenset({"expires_utc", "used_utc"}),
    ),
    (
        "sessions",
        ("id_hash", "user_id", "csrf", "created_utc", "expires_utc"),
        frozenset({"created_utc", "expires_utc"}),
    ),
)
# The PostgreSQL column of a logical instant column (`due_utc` → `due_at`).
_PG_NAMES = {
    "created_utc": "created_at",
    "launched_utc": "launched_at",
    "ended_utc": "ended_at",
    "paused_utc": "paused_at",
    "due_utc": "due_at",
    "planned_utc": "planned_at",
    "sent_utc": "sent_at",
    "done_utc": "done_at",
    "at_utc": "at",
    "expires_utc": "expires_at",
    "used_utc": "used_at",
}
_BOOLEANS = frozenset({"success", "by_hand", "admin"})
# Tables whose rows mean the store is in use (a target must have none).
_IN_USE = ("cadence_versions", "enrolments", "step_runs", "events", "suppressions", "users")


@dataclass(frozen=True, slots=True)
class Copied:
    source: str
    target: str
    counts: dict[str, int]  # table → rows copied (and found in the target after)


class _Side(Protocol):
    def columns(self, table: str) -> set[str]: ...
    def rows(self, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]: ...
    def count(self, table: str) -> int: ...
    def fence(self) -> int: ...


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def _sqlite_path(url: str) -> Path:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    if "://" in url:
        raise UsageError(
            f"unknown state store URL {url!r}",
            hint="give a SQLite file path or a postgresql:// URL",
        )
    return Path(url)


class _Sqlite:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def columns(self, table: str) -> set[str]:
        return {str(r[1]) for r in self.db.execute(f"PRAGMA table_info({table})")}

    def rows(self, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        order = " ORDER BY id" if "id" in columns else ""
        yield from self.db.execute(f"SELECT {', '.join(columns)} FROM {table}{order}")

    def count(self, table: str) -> int:
        if not self.columns(table):
            return 0
        return int(self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def fence(self) -> int:
        found = self.db.execute("SELECT last FROM fences WHERE id = 1").fetchone()
        return int(found[0]) if found else 0

    def insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(columns))
        values = [
            tuple(
                int(v) if c in _BOOLEANS and v is not None else v
                for c, v in zip(columns, r, strict=True)
            )
            for r in rows
        ]
        self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)

    def set_fence(self, last: int) -> None:
        self.db.execute("UPDATE fences SET last = ? WHERE id = 1", (last,))


class _Postgres:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def columns(self, table: str) -> set[str]:
        names = {
            str(r[0])
            for r in self.conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s",
                (table,),
            )
        }
        logical = {v: k for k, v in _PG_NAMES.items()}
        return {logical.get(n, n) for n in names}

    def _select(self, column: str, instants: frozenset[str]) -> str:
        name = _PG_NAMES.get(column, column)
        if column == "lease_until":
            return "extract(epoch FROM lease_until)::float8"
        if column in instants:
            return f"extract(epoch FROM {name})::bigint"
        if column in ("data", "contact"):
            return f"{name}::text"
        return name

    def rows(self, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        instants = next(t[2] for t in TABLES if t[0] == table)
        picks = []
        for c in columns:
            if table == "sender_days" and c == "day":
                picks.append("day::text")
            else:
                picks.append(self._select(c, instants))
        order = " ORDER BY id" if "id" in columns else ""
        query = f"SELECT {', '.join(picks)} FROM {table}{order}"
        yield from self.conn.execute(query.encode())

    def count(self, table: str) -> int:
        found = self.conn.execute(f"SELECT count(*) FROM {table}".encode()).fetchone()
        return int(found[0])

    def fence(self) -> int:
        found = self.conn.execute(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM cadence_fences"
        ).fetchone()
        return int(found[0])

    def insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        instants = next(t[2] for t in TABLES if t[0] == table)
        names = [_PG_NAMES.get(c, c) for c in columns]
        marks = [
            "to_timestamp(%s)" if c in instants else "%s::boolean" if c in _BOOLEANS else "%s"
            for c in columns
        ]
        values = [
            tuple(
                bool(v) if c in _BOOLEANS and v is not None else v
                for c, v in zip(columns, r, strict=True)
            )
            for r in rows
        ]
        with self.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(marks)})".encode(),
                values,
            )

    def set_fence(self, last: int) -> None:
        if last > 0:
            self.conn.execute("SELECT setval('cadence_fences', %s)", (last,))
        for table in ("enrolments", "step_runs", "events", "users"):
            self.conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)".encode()
            )


@contextmanager
def _open(url: str, *, write: bool, named: str) -> Iterator[Any]:
    """A side of the copy: the store is opened first (so its schema is current), then
    one raw connection is used, in one transaction when writing. `named`: the flag or
    variable that gave `url`, for the hint of an error."""
    from . import open_store

    if _is_postgres(url):
        import psycopg

        from .postgres import PostgresStore

        PostgresStore(url, named=named).close()  # migrations
        with psycopg.connect(url) as conn:
            if write:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x6C61756E,))
            yield _Postgres(conn)
        return
    path = _sqlite_path(url)
    if not write and not path.exists():
        raise UsageError(f"{path}: no state store there", hint=f"check {named}")
    if not write:
        # A damaged page reads as fewer rows, or none: the counts would still agree.
        _refuse_damaged(path)
    open_store(str(path)).close()
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield _Sqlite(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _refuse_damaged(path: Path) -> None:
    """`cadence store check`'s integrity and schema check of the source, before anything
    (the target included) is touched."""
    from .sqlite import check_file

    problems = check_file(path)
    if problems:
        raise InputError(
            f"the source store {path} is damaged: " + "; ".join(problems),
            hint=f"nothing was copied; `cadence store check --db {path}` lists the damage: "
            f"restore it from a backup (`sqlite3 {path} .recover` may save its data) and "
            "migrate that",
        )


def copy_store(source: str, target: str, *, redact: Any = str) -> Copied:
    """Copy every table of `source` into the empty store `target`, then verify counts."""
    if source == target:
        raise UsageError("--to names the store being copied", hint="give another store")
    counts: dict[str, int] = {}
    with (
        _open(source, write=False, named="CADENCE_DB / --db") as src,
        _open(target, write=True, named="--to") as dst,
    ):
        used = [t for t in _IN_USE if dst.count(t)]
        if used:
            raise UsageError(
                f"the target store {redact(target)} is not empty ({', '.join(used)} hold rows)",
                hint="give a new, empty database or file; nothing was copied",
            )
        for table, columns, _ in TABLES:
            have = src.columns(table)
            if not have:
                counts[table] = 0
                continue
            want = dst.columns(table)
            cols = [c for c in columns if c in have and c in want]
            batch: list[tuple[Any, ...]] = []
            n = 0
            for row in src.rows(table, cols):
                batch.append(tuple(row))
                if len(batch) == 5000:
                    dst.insert(table, cols, batch)
                    n += len(batch)
                    batch = []
            if batch:
                dst.insert(table, cols, batch)
                n += len(batch)
            counts[table] = n
        dst.set_fence(src.fence())
        for table, expected in counts.items():
            found = dst.count(table)
            if found != expected:
                raise CadenceError(
                    f"copy check failed: {table} has {found} rows in the target, "
                    f"{expected} in the source",
                    hint="nothing was kept in the target; report this as a bug",
                )
    if _is_postgres(target):
        from .postgres import PostgresStore

        with PostgresStore(target) as store:
            store.wake_all()  # a job for every enrolment's next planned step run
    return Copied(redact(source), redact(target), counts)
