"""The embedded SQLite store: WAL, BEGIN IMMEDIATE writes, synchronous=FULL.

Why these settings: WAL lets readers (`status`, `tasks list`) run beside a runner;
`BEGIN IMMEDIATE` takes the write lock up front so two runners never both read a row as
free and then race to update it (a deferred transaction would fail at upgrade time instead
of waiting); `synchronous=FULL` makes a committed `sending` record survive power loss,
which is what "never resent automatically" rests on; `busy_timeout` makes concurrent
runners queue for the lock instead of failing.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.errors import CadenceError, InputError, UsageError
from engine.store import (
    TERMINAL_STATES,
    Claim,
    Decide,
    DecisionKind,
    EndState,
    LaunchResult,
    NewEnrolment,
    Outcome,
    OutcomeKind,
    Shift,
    SignalKind,
    SignalResult,
    StepRow,
    TaskFilter,
    VersionStatus,
    batched,
)
from engine.store.migrations import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 60_000
_TERMINAL = "(" + ",".join(f"'{s}'" for s in TERMINAL_STATES) + ")"
# States that hold a contact's later steps until a person acts (task, `resolve`).
_HOLDING = "('open', 'unknown')"

_ROW_SELECT = """
SELECT sr.id, sr.enrolment_id, e.cadence_name, e.cadence_hash, e.email, e.contact, e.uid,
       e.unsubscribe_token, e.state,
       EXISTS (SELECT 1 FROM suppressions s WHERE s.email = e.email),
       sr.step_id, sr.step_index, sr.day, sr.action, sr.zone, sr.due_utc, sr.planned_utc,
       sr.depends_on, sr.thread_step_id, sr.message_id, sr.state, sr.fence, sr.attempts,
       sr.by_hand, sr.subject, sr.body, sr.sent_utc, sr.done_utc, sr.answer,
       (SELECT COALESCE(t.sent_utc, t.done_utc) FROM step_runs t
        WHERE t.enrolment_id = sr.enrolment_id AND t.step_id = sr.thread_step_id)
FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id
"""

# Due and reachable: every earlier step of the enrolment is settled (R5 holds the rest).
_DUE = (
    _ROW_SELECT
    + f"""
WHERE sr.state = 'planned' AND sr.due_utc <= ? AND e.state = 'active'
  AND NOT EXISTS (
    SELECT 1 FROM step_runs p
    WHERE p.enrolment_id = sr.enrolment_id AND p.step_index < sr.step_index
      AND p.state NOT IN {_TERMINAL})
ORDER BY sr.due_utc, sr.id
LIMIT ?
"""
)

# Step runs of one version by state. Planned ones whose time has come are `due` when
# reachable (every earlier step settled: what the runner's claim takes), `held` when an
# open task (R5) or an unknown send before them stops the contact until a person acts,
# and neither while they queue behind an earlier step of their own that is still to run.
_STEP_COUNTS = f"""
SELECT sr.state || CASE
    WHEN sr.state != 'planned' OR sr.due_utc > ? OR e.state != 'active' THEN ''
    WHEN EXISTS (
        SELECT 1 FROM step_runs p
        WHERE p.enrolment_id = sr.enrolment_id AND p.step_index < sr.step_index
          AND p.state IN {_HOLDING}) THEN ':held'
    WHEN EXISTS (
        SELECT 1 FROM step_runs p
        WHERE p.enrolment_id = sr.enrolment_id AND p.step_index < sr.step_index
          AND p.state NOT IN {_TERMINAL}) THEN ':queued'
    ELSE ':due' END,
    count(*)
FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id
WHERE e.cadence_hash = ? GROUP BY 1
"""

_EVENT = (
    "INSERT INTO events (at_utc, kind, email, enrolment_id, step_run_id, detail) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


_DB_HINT = "point --db / CADENCE_DB at a SQLite file in a folder you can write to"


def store_error(path: Path, exc: sqlite3.Error) -> CadenceError:
    """What SQLite's complaint about `path` means for the user, and what to do about it.

    The one translation of every `sqlite3` error the store meets (opening it, or any
    operation later), so no command ends in an internal error because the file is locked,
    damaged, read-only or not a database at all.
    """
    name = getattr(exc, "sqlite_errorname", "") or ""
    seconds = BUSY_TIMEOUT_MS // 1000
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc):
        return InputError(
            f"state store {path} is locked: another process has held its write lock for "
            f"more than {seconds} s ({exc})",
            hint="another cadence command (run, launch, tasks …) is still writing to it; try "
            f"again when it has finished, or find a stuck one with `fuser {path}`",
        )
    if name.startswith("SQLITE_NOTADB"):
        return UsageError(
            f"{path} is not a cadence state store: it is not a SQLite database ({exc})",
            hint=_DB_HINT,
        )
    if name.startswith("SQLITE_CORRUPT"):
        return InputError(
            f"state store {path} is damaged ({exc})",
            hint=f"restore it from a backup; `cadence store check` names the damaged tables, "
            f"and `sqlite3 {path} .recover` may save its data",
        )
    if name.startswith("SQLITE_READONLY"):
        return UsageError(
            f"cannot write to state store {path}: it is read-only ({exc})",
            hint=f"make {path} and its folder writable (SQLite also writes {path.name}-wal "
            f"and {path.name}-shm beside it), or {_DB_HINT}",
        )
    if name.startswith("SQLITE_FULL"):
        return InputError(f"cannot write to state store {path}: the disk is full ({exc})")
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in str(exc):
        folder = path.parent
        if path.is_dir():
            why = "it is a folder"
        elif not folder.is_dir():
            why = f"its folder {folder} does not exist"
        elif not _writable(folder):
            why = f"its folder {folder} is not writable (SQLite writes -wal and -shm files there)"
        else:
            why = str(exc)
        return UsageError(f"cannot open state store {path}: {why}", hint=_DB_HINT)
    if name.startswith("SQLITE_IOERR") or "disk I/O" in str(exc):
        return UsageError(
            f"cannot use {path} as the state store: input/output error ({exc})",
            hint=f"it must be a regular file on a local disk; {_DB_HINT}",
        )
    return InputError(f"state store {path}: {exc}", hint=_DB_HINT)


# -- checks at open: the path, a foreign or altered schema, damage ------------------------
# Kept as functions of their own: any store layout runs them the same way.

_EMPTY_WAIT_S = 0.5  # a store being created by another process is empty only for a moment


def refuse_unusable_path(path: Path) -> None:
    """`:memory:` (every event lost at exit) and an existing empty file (a store whose
    history is gone: using it would enrol everyone again) are refused; a new path is fine."""
    import time

    text = str(path)
    if text in ("", ":memory:") or text.startswith("file::memory:") or "mode=memory" in text:
        raise UsageError(
            f"CADENCE_DB={text or '(empty)'} is an in-memory database: every send, task and "
            "signal would be lost when the command ends",
            hint=_DB_HINT,
        )
    deadline = time.monotonic() + _EMPTY_WAIT_S
    while _empty_file(path):
        if time.monotonic() > deadline:
            raise UsageError(
                f"state store {path} is an empty file: a store that lost its data, or "
                "was truncated (using it would enrol every contact again)",
                hint=f"restore {path} from a backup; to start a new, empty store there, "
                f"delete the file first (`rm {path}`)",
            )
        time.sleep(0.05)


def _empty_file(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:
        return False  # connecting reports it


def check_foreign(path: Path, db: sqlite3.Connection, version: int) -> None:
    """A database that is not ours (tables but no schema version) or whose version was
    altered (negative) is refused before any migration touches it."""
    if version < 0:
        raise InputError(
            f"state store {path} has schema version {version}, which cadence-engine never "
            "writes: the file was altered by another program",
            hint=f"restore {path} from a backup; `cadence store check` names what is damaged",
        )
    if version == 0:
        tables = [
            r[0]
            for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        if tables:
            raise UsageError(
                f"{path} is a SQLite database but not a cadence state store "
                f"(it has tables {', '.join(sorted(tables)[:5])} and no schema version)",
                hint=_DB_HINT,
            )


@functools.cache
def expected_schema() -> dict[str, frozenset[str]]:
    """Every table and index the migrations create: name → its columns (indexes: empty)."""
    db = sqlite3.connect(":memory:")
    try:
        for _, script in MIGRATIONS:
            for statement in _statements(script):
                db.execute(statement)
        return _schema_of(db)
    finally:
        db.close()


def _schema_of(db: sqlite3.Connection) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for kind, name in db.execute(
        "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index') "
        "AND name NOT LIKE 'sqlite_%'"
    ).fetchall():
        columns = (
            frozenset(r[1] for r in db.execute(f'PRAGMA table_info("{name}")'))
            if kind == "table"
            else frozenset()
        )
        out[name] = columns
    return out


def schema_problems(db: sqlite3.Connection) -> list[str]:
    """Tables, columns and indexes of the migrations that the store lacks."""
    have = _schema_of(db)
    problems: list[str] = []
    for name, columns in expected_schema().items():
        if name not in have:
            kind = "table" if columns else "index"
            problems.append(f"{kind} {name} is missing")
        elif missing := sorted(columns - have[name]):
            problems.append(
                f"table {name} lacks column{'s' * (len(missing) > 1)} " + ", ".join(missing)
            )
    return problems


def integrity_problems(db: sqlite3.Connection, limit: int = 20) -> list[str]:
    """SQLite's integrity check, each damaged page or index named by its table."""
    roots = {
        int(r[0]): f"{r[1]} {r[2]}"
        for r in db.execute("SELECT rootpage, type, name FROM sqlite_master WHERE rootpage > 0")
    }
    out: list[str] = []
    try:
        lines = [r[0] for r in db.execute(f"PRAGMA integrity_check({limit})")]
    except sqlite3.DatabaseError:
        # Too damaged for one pass: check table by table (each with its indexes).
        return _per_table_problems(db)
    for line in lines:
        if line == "ok":
            continue
        tree = re.search(r"Tree (\d+)", line)
        owner = roots.get(int(tree.group(1))) if tree else None
        out.append(f"{owner}: {line}" if owner else line)
    return out


def _per_table_problems(db: sqlite3.Connection) -> list[str]:
    tables = [
        r[0]
        for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    out: list[str] = []
    for table in tables:
        indexes = [
            r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE tbl_name = ?", (table,))
        ]
        try:
            lines = [r[0] for r in db.execute(f'PRAGMA integrity_check("{table}")')]
        except sqlite3.DatabaseError as exc:
            lines = [f"{exc} (pages of the table or of its indexes {', '.join(indexes)})"]
        out += [f"table {table}: {line}" for line in lines if line != "ok"]
    return out or ["the database file is malformed"]


def damaged(path: Path, problems: list[str]) -> CadenceError:
    return InputError(
        f"state store {path} is damaged: " + "; ".join(problems),
        hint=f"restore it from a backup; `cadence store check` lists the damage, and "
        f"`sqlite3 {path} .recover` may save its data",
    )


def _writable(folder: Path) -> bool:
    import os

    return os.access(folder, os.W_OK) and not _immutable(folder)


def _immutable(folder: Path) -> bool:
    """os.access ignores chattr +i (and read-only mounts for root): try it."""
    import os
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".cadence-probe-")
    except OSError:
        return True
    os.close(fd)
    os.unlink(name)
    return False


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: SqliteStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None

    return wrapper


def _translating(cls: type[SqliteStore]) -> type[SqliteStore]:
    """Every public method of the store reports SQLite errors through `store_error`."""
    for name, attr in list(vars(cls).items()):
        if callable(attr) and not name.startswith("_"):
            setattr(cls, name, _translated(attr))
    return cls


def _row(r: tuple[Any, ...]) -> StepRow:
    return StepRow(
        id=r[0],
        enrolment_id=r[1],
        cadence_name=r[2],
        cadence_hash=r[3],
        email=r[4],
        contact=r[5],
        uid=r[6],
        unsubscribe_token=r[7],
        enrolment_state=r[8],
        suppressed=bool(r[9]),
        step_id=r[10],
        step_index=r[11],
        day=r[12],
        action=r[13],
        zone=r[14],
        due_utc=r[15],
        planned_utc=r[16],
        depends_on=r[17],
        thread_step_id=r[18],
        message_id=r[19],
        state=r[20],
        fence=r[21],
        attempts=r[22],
        by_hand=bool(r[23]),
        subject=r[24],
        body=r[25],
        sent_utc=r[26],
        done_utc=r[27],
        answer=r[28],
        thread_sent_utc=r[29],
    )


@_translating
class SqliteStore:
    """`Store` on one SQLite file. One connection; not shared between threads."""

    def __init__(self, path: Path, *, check_schema: bool = True) -> None:
        self.path = path
        refuse_unusable_path(path)
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise store_error(path, exc) from None
        try:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
            if check_schema:
                problems = schema_problems(self._db)
                if problems:
                    raise damaged(path, problems)
        except sqlite3.Error as exc:
            self._db.close()
            raise store_error(path, exc) from None
        except BaseException:
            self._db.close()
            raise

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back already (I/O, full)
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        (current,) = self._db.execute("PRAGMA user_version").fetchone()
        if current == SCHEMA_VERSION:
            return
        with self._write() as db:
            # Re-read under the write lock: another process may have just migrated.
            (current,) = db.execute("PRAGMA user_version").fetchone()
            check_foreign(self.path, db, current)
            if current > SCHEMA_VERSION:
                raise UsageError(
                    f"{self.path} has schema version {current}; this cadence-engine knows "
                    f"up to {SCHEMA_VERSION}",
                    hint="upgrade cadence-engine",
                )
            for number, script in MIGRATIONS:
                if number > current:
                    for statement in _statements(script):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {number}")

    def check(self) -> list[str]:
        """What is damaged, in words (empty when the store is whole): SQLite's integrity
        check of every page and index, then the schema against the migrations."""
        return integrity_problems(self._db) + schema_problems(self._db)

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- cadence versions and launch ------------------------------------------------------

    def save_version(self, cadence_hash: str, name: str, source: str, data: str, now: int) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO cadence_versions VALUES (?, ?, ?, ?, ?)",
                (cadence_hash, name, source, data, now),
            )

    def version(self, cadence_hash: str) -> tuple[str, str]:
        row = self._db.execute(
            "SELECT data, source FROM cadence_versions WHERE hash = ?", (cadence_hash,)
        ).fetchone()
        if row is None:
            raise InputError(f"cadence version {cadence_hash} is not in the state store")
        return str(row[0]), str(row[1])

    def versions(self) -> dict[str, tuple[str, str]]:
        rows = self._db.execute("SELECT hash, name, data FROM cadence_versions").fetchall()
        return {h: (n, d) for h, n, d in rows}

    def launch(
        self, cadence_name: str, cadence_hash: str, enrolments: Iterable[NewEnrolment], now: int
    ) -> LaunchResult:
        enrolled: list[str] = []
        already: list[str] = []
        suppressed: list[str] = []
        with self._write() as db:
            for new in enrolments:
                if db.execute(
                    "SELECT 1 FROM suppressions WHERE email = ?", (new.email,)
                ).fetchone():
                    suppressed.append(new.email)
                    continue
                cur = db.execute(
                    "INSERT OR IGNORE INTO enrolments (uid, cadence_name, cadence_hash, email, "
                    "contact, unsubscribe_token, launched_utc) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        new.uid,
                        cadence_name,
                        cadence_hash,
                        new.email,
                        new.contact,
                        new.unsubscribe_token,
                        now,
                    ),
                )
                if cur.rowcount == 0:  # the partial unique index: already enrolled
                    already.append(new.email)
                    continue
                enrolment_id = cur.lastrowid
                db.executemany(
                    "INSERT INTO step_runs (enrolment_id, step_id, step_index, day, action, "
                    "zone, due_utc, planned_utc, depends_on, thread_step_id, message_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            enrolment_id,
                            s.step_id,
                            s.step_index,
                            s.day,
                            s.action,
                            s.zone,
                            s.due_utc,
                            s.due_utc,
                            s.depends_on,
                            s.thread_step_id,
                            s.message_id,
                        )
                        for s in new.steps
                    ],
                )
                db.execute(_EVENT, (now, "launched", new.email, enrolment_id, None, cadence_hash))
                enrolled.append(new.email)
        return LaunchResult(tuple(enrolled), tuple(already), tuple(suppressed))

    # -- the claim → sending → finish protocol --------------------------------------------

    def _expire_leases(self, db: sqlite3.Connection, lease_now: float, now: int) -> None:
        # Claimed but never marked sending: nothing was handed over, so claim again.
        db.execute(
            "UPDATE step_runs SET state = 'planned', fence = NULL, lease_until = NULL "
            "WHERE state = 'claimed' AND lease_until < ?",
            (lease_now,),
        )
        # In `sending` when its runner died: it may or may not have gone out. Never resend
        # automatically; an operator settles it with `cadence resolve`.
        expired = db.execute(
            "SELECT sr.id, sr.enrolment_id, e.email, sr.message_id FROM step_runs sr "
            "JOIN enrolments e ON e.id = sr.enrolment_id "
            "WHERE sr.state = 'sending' AND sr.lease_until < ?",
            (lease_now,),
        ).fetchall()
        if expired:
            db.executemany(
                "UPDATE step_runs SET state = 'unknown', "
                "answer = 'runner stopped while sending' WHERE id = ?",
                [(r[0],) for r in expired],
            )
            db.executemany(_EVENT, [(now, "unknown", r[2], r[1], r[0], r[3]) for r in expired])

    def claim(
        self, now: int, limit: int, lease_now: float, lease_until: float, decide: Decide
    ) -> Claim:
        with self._write() as db:
            self._expire_leases(db, lease_now, now)
            (fence,) = db.execute(
                "UPDATE fences SET last = last + 1 WHERE id = 1 RETURNING last"
            ).fetchone()
            rows = [_row(r) for r in db.execute(_DUE, (now, limit)).fetchall()]
            counts: dict[tuple[str, str], int] = {}

            def sent_on(sender: str, day: str) -> int:
                key = (sender, day)
                if key not in counts:
                    found = db.execute(
                        "SELECT sent FROM sender_days WHERE sender = ? AND day = ?", key
                    ).fetchone()
                    counts[key] = int(found[0]) if found else 0
                return counts[key]

            claimed: list[StepRow] = []
            ended: set[int] = set()  # enrolments a cancellation may have finished
            claim_args: list[tuple[Any, ...]] = []
            events: list[tuple[Any, ...]] = []
            for row in rows:
                d = decide(row, sent_on)
                if d.kind is DecisionKind.CLAIM:
                    claimed.append(row)
                    claim_args.append((fence, lease_until, row.id))
                    if d.day_key is not None:
                        counts[d.day_key] = sent_on(*d.day_key) + 1
                elif d.kind is DecisionKind.OPEN_TASK:
                    db.execute("UPDATE step_runs SET state = 'open' WHERE id = ?", (row.id,))
                    events.append(
                        (now, "task created", row.email, row.enrolment_id, row.id, row.action)
                    )
                elif d.kind is DecisionKind.RESCHEDULE:
                    assert d.due_utc is not None
                    db.execute("UPDATE step_runs SET due_utc = ? WHERE id = ?", (d.due_utc, row.id))
                    events.append(
                        (now, "rescheduled", row.email, row.enrolment_id, row.id, d.reason)
                    )
                else:
                    db.execute(
                        "UPDATE step_runs SET state = 'cancelled', answer = ? WHERE id = ?",
                        (d.reason, row.id),
                    )
                    events.append((now, "cancelled", row.email, row.enrolment_id, row.id, d.reason))
                    ended.add(row.enrolment_id)
            db.executemany(
                "UPDATE step_runs SET state = 'claimed', fence = ?, lease_until = ? WHERE id = ?",
                claim_args,
            )
            db.executemany(_EVENT, events)
            db.executemany(
                "INSERT INTO sender_days VALUES (?, ?, ?) "
                "ON CONFLICT (sender, day) DO UPDATE SET sent = excluded.sent",
                [(s, d, n) for (s, d), n in counts.items()],
            )
            self._complete(db, ended, now)
        kinds = [e[1] for e in events]
        return Claim(
            fence=fence,
            rows=tuple(claimed),
            examined=len(rows),
            opened=kinds.count("task created"),
            rescheduled=kinds.count("rescheduled"),
            cancelled=kinds.count("cancelled"),
        )

    def begin_sending(self, fence: int, ids: Iterable[int]) -> set[int]:
        wanted = list(ids)
        with self._write() as db:
            # A signal recorded since the claim wins: check again under the write lock.
            stopped = self._stopped(db, wanted)
            if stopped:
                db.executemany(
                    "UPDATE step_runs SET state = 'cancelled', answer = 'stopped by a signal' "
                    "WHERE id = ? AND fence = ? AND state = 'claimed'",
                    [(i, fence) for i in stopped],
                )
            db.executemany(
                "UPDATE step_runs SET state = 'sending' "
                "WHERE id = ? AND fence = ? AND state = 'claimed'",
                [(i, fence) for i in wanted if i not in stopped],
            )
            ours = {
                r[0]
                for r in db.execute(
                    "SELECT id FROM step_runs WHERE fence = ? AND state = 'sending'", (fence,)
                )
            }
        return ours & set(wanted)

    def _stopped(self, db: sqlite3.Connection, ids: list[int]) -> set[int]:
        out: set[int] = set()
        for chunk in batched(ids):
            marks = ",".join("?" * len(chunk))
            out.update(
                r[0]
                for r in db.execute(
                    f"SELECT sr.id FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id "
                    f"WHERE sr.id IN ({marks}) AND (e.state != 'active' OR sr.state = 'cancelled'"
                    f" OR EXISTS (SELECT 1 FROM suppressions s WHERE s.email = e.email))",
                    chunk,
                )
            )
        return out

    def stopped(self, ids: Iterable[int]) -> set[int]:
        return self._stopped(self._db, list(ids))

    def finish(self, fence: int, outcomes: Iterable[Outcome], end_state: EndState) -> None:
        with self._write() as db:
            touched: set[int] = set()
            events: list[tuple[Any, ...]] = []
            bounced: list[tuple[str, int]] = []
            for o in outcomes:
                info = db.execute(
                    "SELECT sr.enrolment_id, e.email, sr.message_id, sr.step_id "
                    "FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id "
                    "WHERE sr.id = ? AND sr.fence = ? "
                    "AND sr.state IN ('claimed', 'sending', 'unknown')",
                    (o.step_run_id, fence),
                ).fetchone()
                if info is None:  # no longer ours: another runner's fence took it
                    continue
                enrolment_id, email, message_id, _step = info
                touched.add(enrolment_id)
                if o.kind is OutcomeKind.SENT:
                    db.execute(
                        "UPDATE step_runs SET state = 'sent', sent_utc = ?, answer = ? "
                        "WHERE id = ?",
                        (o.at_utc, o.answer or None, o.step_run_id),
                    )
                    events.append(
                        (o.at_utc, "sent", email, enrolment_id, o.step_run_id, message_id)
                    )
                    for move in o.followers:
                        db.execute(
                            "UPDATE step_runs SET due_utc = ?, planned_utc = ? "
                            "WHERE enrolment_id = ? AND step_id = ? AND state = 'planned'",
                            (move.due_utc, move.planned_utc, enrolment_id, move.step_id),
                        )
                        events.append(
                            (
                                o.at_utc,
                                "rescheduled",
                                email,
                                enrolment_id,
                                move.step_run_id,
                                move.reason,
                            )
                        )
                elif o.kind is OutcomeKind.RELEASED:
                    db.execute(
                        "UPDATE step_runs SET state = 'planned', fence = NULL, "
                        "lease_until = NULL WHERE id = ?",
                        (o.step_run_id,),
                    )
                elif o.kind is OutcomeKind.RETRY:
                    db.execute(
                        "UPDATE step_runs SET state = 'planned', fence = NULL, "
                        "lease_until = NULL, due_utc = ?, attempts = attempts + 1, answer = ? "
                        "WHERE id = ?",
                        (o.retry_utc, o.answer, o.step_run_id),
                    )
                    events.append((o.at_utc, "retry", email, enrolment_id, o.step_run_id, o.answer))
                else:
                    state = {
                        OutcomeKind.FAILED: "failed",
                        OutcomeKind.BOUNCED: "failed",
                        OutcomeKind.CANCELLED: "cancelled",
                        OutcomeKind.UNKNOWN: "unknown",
                    }[o.kind]
                    db.execute(
                        "UPDATE step_runs SET state = ?, answer = ? WHERE id = ?",
                        (state, o.answer, o.step_run_id),
                    )
                    events.append(
                        (o.at_utc, str(o.kind), email, enrolment_id, o.step_run_id, o.answer)
                    )
                    if o.kind is OutcomeKind.BOUNCED:
                        bounced.append((email, o.at_utc))
            db.executemany(_EVENT, events)
            for email, at in bounced:
                self._signal(db, SignalKind.BOUNCE, email, None, at, end_state, log=False)
            self._complete(db, touched, max((e[0] for e in events), default=0))

    def _complete(self, db: sqlite3.Connection, enrolment_ids: Iterable[int], now: int) -> None:
        db.executemany(
            "UPDATE enrolments SET state = 'completed', ended_utc = ? "
            "WHERE id = ? AND state = 'active' AND NOT EXISTS ("
            f"SELECT 1 FROM step_runs WHERE enrolment_id = ? AND state NOT IN {_TERMINAL})",
            [(now, i, i) for i in enrolment_ids],
        )

    # -- signals --------------------------------------------------------------------------

    def record_signal(
        self, kind: SignalKind, email: str, cadence_name: str | None, now: int, end: EndState
    ) -> SignalResult:
        with self._write() as db:
            return self._signal(db, kind, email.lower(), cadence_name, now, end, log=True)

    def _signal(
        self,
        db: sqlite3.Connection,
        kind: SignalKind,
        email: str,
        cadence_name: str | None,
        now: int,
        end: EndState,
        *,
        log: bool,
    ) -> SignalResult:
        new = (
            db.execute(
                "INSERT OR IGNORE INTO signals VALUES (?, ?, ?, ?)",
                (str(kind), email, cadence_name or "", now),
            ).rowcount
            == 1
        )
        if log and new:
            db.execute(_EVENT, (now, str(kind), email, None, None, cadence_name))
        if kind is not SignalKind.REPLY:
            db.execute(
                "INSERT OR IGNORE INTO suppressions VALUES (?, ?, ?)", (email, str(kind), now)
            )
        query = "SELECT id, cadence_hash FROM enrolments WHERE email = ? AND state = 'active'"
        args: tuple[Any, ...] = (email,)
        if cadence_name is not None and kind is SignalKind.REPLY:
            query += " AND cadence_name = ?"
            args += (cadence_name,)
        ended: list[int] = []
        cancelled = 0
        for enrolment_id, cadence_hash in db.execute(query, args).fetchall():
            state, success = end(kind, cadence_hash)
            if success:
                db.execute("UPDATE enrolments SET success = 1 WHERE id = ?", (enrolment_id,))
            if state is None:
                continue
            db.execute(
                "UPDATE enrolments SET state = ?, ended_utc = ? WHERE id = ?",
                (state, now, enrolment_id),
            )
            # Claimed rows belong to a runner that has not committed `sending`: its
            # begin_sending sees them cancelled. Rows already `sending` are caught by the
            # runner's last check before the transport.
            cancelled += db.execute(
                "UPDATE step_runs SET state = 'cancelled', answer = ? WHERE enrolment_id = ? "
                "AND state IN ('planned', 'claimed', 'open')",
                (f"stopped: {kind}", enrolment_id),
            ).rowcount
            ended.append(enrolment_id)
        if kind is SignalKind.REPLY:
            self._reply_after_completion(db, email, cadence_name, end)
        return SignalResult(new=new, ended=tuple(ended), cancelled_steps=cancelled)

    def _reply_after_completion(
        self, db: sqlite3.Connection, email: str, cadence_name: str | None, end: EndState
    ) -> None:
        """A reply to the last email comes after the enrolment completed: it still counts.

        Only the contact's latest enrolment of each cadence, and only one that ran to its
        end: it becomes `replied` (per on_reply.end) and a success (per mark_success).
        """
        query = (
            "SELECT id, cadence_hash FROM enrolments e WHERE email = ? AND state = 'completed' "
            "AND id = (SELECT max(id) FROM enrolments l "
            "WHERE l.email = e.email AND l.cadence_name = e.cadence_name)"
        )
        args: tuple[Any, ...] = (email,)
        if cadence_name is not None:
            query += " AND cadence_name = ?"
            args += (cadence_name,)
        for enrolment_id, cadence_hash in db.execute(query, args).fetchall():
            state, success = end(SignalKind.REPLY, cadence_hash)
            db.execute(
                "UPDATE enrolments SET state = ?, success = max(success, ?) WHERE id = ?",
                (state or "completed", int(success), enrolment_id),
            )

    # -- reads ----------------------------------------------------------------------------

    def step_run(self, step_run_id: int) -> StepRow | None:
        found = self._db.execute(_ROW_SELECT + " WHERE sr.id = ?", (step_run_id,)).fetchone()
        return _row(found) if found else None

    def step_runs(self, enrolment_id: int) -> list[StepRow]:
        rows = self._db.execute(
            _ROW_SELECT + " WHERE sr.enrolment_id = ? ORDER BY sr.step_index", (enrolment_id,)
        ).fetchall()
        return [_row(r) for r in rows]

    def enrolment_ids(self, email: str) -> list[int]:
        return [
            r[0]
            for r in self._db.execute(
                "SELECT id FROM enrolments WHERE email = ? ORDER BY id", (email.lower(),)
            )
        ]

    def tasks(self, where: TaskFilter) -> list[StepRow]:
        query = _ROW_SELECT + " WHERE sr.state = 'open'"
        args: list[Any] = []
        if where.cadence is not None:
            query += " AND e.cadence_name = ?"
            args.append(where.cadence)
        if where.action is not None:
            query += " AND sr.action = ?"
            args.append(where.action)
        if where.due_before is not None:
            query += " AND sr.due_utc <= ?"
            args.append(where.due_before)
        if where.sender is not None:
            query += (
                " AND e.cadence_hash IN (SELECT hash FROM cadence_versions "
                "WHERE lower(json_extract(data, '$.sender.email')) = ?)"
            )
            args.append(where.sender.lower())
        query += " ORDER BY sr.due_utc, sr.id"
        return [_row(r) for r in self._db.execute(query, args).fetchall()]

    def events(self, step_run_id: int | None = None) -> list[tuple[int, str, str, str]]:
        query = "SELECT at_utc, kind, coalesce(email, ''), coalesce(detail, '') FROM events"
        args: tuple[Any, ...] = ()
        if step_run_id is not None:
            query += " WHERE step_run_id = ?"
            args = (step_run_id,)
        return [tuple(r) for r in self._db.execute(query + " ORDER BY id", args).fetchall()]

    # -- tasks ----------------------------------------------------------------------------

    def _open_task(self, db: sqlite3.Connection, step_run_id: int) -> StepRow:
        found = db.execute(_ROW_SELECT + " WHERE sr.id = ?", (step_run_id,)).fetchone()
        row = _row(found) if found is not None else None
        if row is None or (row.action == "send email" and not row.by_hand):
            raise UsageError(f"no task {step_run_id}", hint="see `cadence tasks list`")
        if row.state != "open":
            raise UsageError(f"task {step_run_id} is not open (it is {row.state})")
        return row

    def complete_task(self, step_run_id: int, state: str, now: int, shift: Shift) -> StepRow:
        with self._write() as db:
            row = self._open_task(db, step_run_id)
            db.execute(
                "UPDATE step_runs SET state = ?, done_utc = ? WHERE id = ?",
                (state, now, step_run_id),
            )
            later = [
                _row(r)
                for r in db.execute(
                    _ROW_SELECT + " WHERE sr.enrolment_id = ? AND sr.step_index > ? "
                    "AND sr.state = 'planned' ORDER BY sr.step_index",
                    (row.enrolment_id, row.step_index),
                ).fetchall()
            ]
            moves = shift(row, later)
            planned = {r.id: r.planned_utc for r in later}
            late = any(m.planned_utc != planned[m.step_run_id] for m in moves)
            why = "after late task" if late else "after email task sent"
            db.executemany(
                "UPDATE step_runs SET due_utc = ?, planned_utc = ? WHERE id = ?",
                [(m.due_utc, m.planned_utc, m.step_run_id) for m in moves],
            )
            kind = "task done" if state == "done" else "task skipped"
            db.execute(_EVENT, (now, kind, row.email, row.enrolment_id, row.id, row.action))
            db.executemany(
                _EVENT,
                [
                    (now, "rescheduled", row.email, row.enrolment_id, m.step_run_id, why)
                    for m in moves
                ],
            )
            self._complete(db, [row.enrolment_id], now)
        updated = self.step_run(step_run_id)
        assert updated is not None
        return updated

    def schedule_task_email(
        self, step_run_id: int, subject: str, body: str, due_utc: int
    ) -> StepRow:
        with self._write() as db:
            row = self._open_task(db, step_run_id)
            if row.action != "email task":
                raise UsageError(f"task {step_run_id} is a {row.action}, not an email task")
            db.execute(
                "UPDATE step_runs SET state = 'planned', by_hand = 1, subject = ?, body = ?, "
                "due_utc = ? WHERE id = ?",
                (subject, body, due_utc, step_run_id),
            )
            db.execute(
                _EVENT,
                (due_utc, "rescheduled", row.email, row.enrolment_id, row.id, "sent by a rep"),
            )
        updated = self.step_run(step_run_id)
        assert updated is not None
        return updated

    def take_task_email(
        self, step_run_id: int, subject: str, body: str, lease_until: float
    ) -> tuple[int, StepRow]:
        with self._write() as db:
            row = self._open_task(db, step_run_id)
            if row.action != "email task":
                raise UsageError(f"task {step_run_id} is a {row.action}, not an email task")
            (fence,) = db.execute(
                "UPDATE fences SET last = last + 1 WHERE id = 1 RETURNING last"
            ).fetchone()
            db.execute(
                "UPDATE step_runs SET state = 'claimed', fence = ?, lease_until = ?, "
                "by_hand = 1, subject = ?, body = ? WHERE id = ?",
                (fence, lease_until, subject, body, step_run_id),
            )
        updated = self.step_run(step_run_id)
        assert updated is not None
        return int(fence), updated

    # -- status and resolve ---------------------------------------------------------------

    def status(self, now: int) -> list[VersionStatus]:
        out: list[VersionStatus] = []
        versions = self._db.execute(
            "SELECT v.hash, v.name, coalesce(json_extract(v.data, '$.sender.email'), '') "
            "FROM cadence_versions v "
            "WHERE EXISTS (SELECT 1 FROM enrolments e WHERE e.cadence_hash = v.hash) "
            "ORDER BY v.name, v.created_utc"
        ).fetchall()
        for cadence_hash, name, sender in versions:
            states = dict(
                self._db.execute(
                    "SELECT state, count(*) FROM enrolments WHERE cadence_hash = ? GROUP BY state",
                    (cadence_hash,),
                ).fetchall()
            )
            (successes,) = self._db.execute(
                "SELECT count(*) FROM enrolments WHERE cadence_hash = ? AND success = 1",
                (cadence_hash,),
            ).fetchone()
            steps = dict(self._db.execute(_STEP_COUNTS, (now, cadence_hash)).fetchall())
            out.append(
                VersionStatus(
                    cadence_name=name,
                    cadence_hash=cadence_hash,
                    sender=sender,
                    enrolled=sum(states.values()),
                    active=states.get("active", 0),
                    finished={
                        k: states.get(k, 0)
                        for k in ("replied", "bounced", "unsubscribed", "completed")
                    },
                    sent=steps.get("sent", 0),
                    due=steps.get("planned:due", 0),
                    held=steps.get("planned:held", 0),
                    successes=int(successes),
                    open_tasks=steps.get("open", 0),
                )
            )
        return out

    def unknown_sends(self) -> list[StepRow]:
        rows = self._db.execute(
            _ROW_SELECT + " WHERE sr.state = 'unknown' ORDER BY sr.id"
        ).fetchall()
        return [_row(r) for r in rows]

    def resolve(self, step_run_id: int, sent: bool, now: int) -> StepRow:
        with self._write() as db:
            found = db.execute(_ROW_SELECT + " WHERE sr.id = ?", (step_run_id,)).fetchone()
            if found is None:
                raise UsageError(f"no send with key {step_run_id}")
            row = _row(found)
            if row.state != "unknown":
                raise UsageError(f"send {step_run_id} is {row.state}, not unknown")
            if sent:
                db.execute(
                    "UPDATE step_runs SET state = 'sent', sent_utc = ?, fence = NULL WHERE id = ?",
                    (now, step_run_id),
                )
            else:
                # Same row, same Message-ID: a receiving server that did get it can dedupe.
                # Its due time is kept: it was due when first claimed, so the next run
                # (whatever its --now) sends it.
                db.execute(
                    "UPDATE step_runs SET state = 'planned', fence = NULL, "
                    "lease_until = NULL WHERE id = ?",
                    (step_run_id,),
                )
            detail = "sent" if sent else "resend"
            db.execute(_EVENT, (now, "resolved", row.email, row.enrolment_id, row.id, detail))
            self._complete(db, [row.enrolment_id], now)
        updated = self.step_run(step_run_id)
        assert updated is not None
        return updated


def _statements(script: str) -> list[str]:
    """Split a migration into statements (sqlite3.execute runs one at a time).

    executescript would COMMIT our BEGIN IMMEDIATE first, so it cannot run inside the
    migration transaction.
    """
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                out.append(current)
            current = ""
    return out


def dumps(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
