"""The embedded SQLite store: WAL, BEGIN IMMEDIATE writes, synchronous=FULL.

Why these settings: WAL lets readers (`status`, `tasks list`) run beside a runner;
`BEGIN IMMEDIATE` takes the write lock up front so two runners never both read a row as
free and then race to update it (a deferred transaction would fail at upgrade time instead
of waiting); `synchronous=FULL` makes a committed `sending` record survive power loss,
which is what "never resent automatically" rests on; `busy_timeout` makes concurrent
runners queue for the lock instead of failing.
"""

from __future__ import annotations

import array
import ctypes
import fcntl
import functools
import operator
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from ..errors import CadenceError, InputError, NotFound, UsageError
from ..plan import Action
from . import (
    NO_FILTER,
    OUTCOME_EVENT,
    OUTCOME_STATE,
    SETTLED,
    Claim,
    Cursor,
    Ending,
    EnrolmentRecord,
    EnrolmentState,
    EventRecord,
    LaunchResult,
    Move,
    NewEnrolment,
    Outcome,
    OutcomeKind,
    Signal,
    SignalKind,
    StepRow,
    StepState,
    TaskFilter,
    VersionStatus,
    batched,
    filtered,
)
from .migrations import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 60_000
_SETTLED = "(" + ",".join(f"'{s}'" for s in sorted(SETTLED)) + ")"
_RUNNING = "('active', 'paused')"  # enrolments a launch must not duplicate

_ROW_SELECT = """
SELECT sr.id, sr.enrolment_id, e.cadence_name, e.cadence_hash, e.email, e.contact, e.uid,
       e.unsubscribe_token, e.state,
       EXISTS (SELECT 1 FROM suppressions s WHERE s.email = e.email),
       sr.step_id, sr.step_index, sr.day, sr.action, sr.zone, sr.due_utc, sr.planned_utc,
       sr.thread_step_id, sr.message_id, sr.state, sr.fence, sr.attempts,
       sr.by_hand, sr.subject, sr.body, sr.sent_utc, sr.done_utc, sr.answer,
       -- an email task marked done was sent by the rep; a skipped one never went out
       COALESCE(t.sent_utc, CASE WHEN t.state = 'done' THEN t.done_utc END),
       CASE WHEN t.by_hand THEN t.subject END,
       sr.lease_until, sr.unsubscribe_url
FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id
LEFT JOIN step_runs t ON t.enrolment_id = sr.enrolment_id AND t.step_id = sr.thread_step_id
"""

# Due and reachable (the contract's claim): every earlier step of the enrolment settled.
_DUE = (
    _ROW_SELECT
    + f"""
WHERE sr.state = 'planned' AND sr.due_utc <= ? AND e.state = 'active'
  AND NOT EXISTS (
    SELECT 1 FROM step_runs p
    WHERE p.enrolment_id = sr.enrolment_id AND p.step_index < sr.step_index
      AND p.state NOT IN {_SETTLED})
ORDER BY sr.due_utc, sr.id
LIMIT ?
"""
)

# Step runs of one version by state. Planned ones whose time has come are `due` when
# reachable, `held` when an open task (R5) or an unknown send before them (also a
# `sending` row whose lease ran out, before a run converts it) stops the contact until a
# person acts, and neither while they queue behind an earlier step of their own.
# In-flight rows whose lease is over count as what a crash left behind.
_STEP_COUNTS = f"""
SELECT CASE
    WHEN sr.state IN ('claimed', 'sending') AND sr.lease_until < :clock THEN
        CASE sr.state WHEN 'sending' THEN 'unknown' ELSE 'planned:due' END
    WHEN sr.state = 'planned' AND sr.attempts > 0 THEN 'retrying'
    ELSE sr.state END || CASE
    WHEN sr.state != 'planned' OR sr.due_utc > :now OR e.state != 'active' THEN ''
    WHEN EXISTS (
        SELECT 1 FROM step_runs p
        WHERE p.enrolment_id = sr.enrolment_id AND p.step_index < sr.step_index
          AND (p.state IN ('open', 'unknown')
               OR (p.state = 'sending' AND p.lease_until < :clock))) THEN ':held'
    WHEN EXISTS (
        SELECT 1 FROM step_runs p
        WHERE p.enrolment_id = sr.enrolment_id AND p.step_index < sr.step_index
          AND p.state NOT IN {_SETTLED}) THEN ':queued'
    ELSE ':due' END,
    count(*)
FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id
WHERE e.cadence_hash = :hash GROUP BY 1
"""

_EVENT = (
    "INSERT INTO events (at_utc, kind, email, enrolment_id, step_run_id, detail, source) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_ENROLMENT = (
    "SELECT id, uid, cadence_name, cadence_hash, email, contact, unsubscribe_token, state, "
    "success, launched_utc, ended_utc, paused_utc, paused_until FROM enrolments"
)
# Cadence versions whose sender is the given address (a rep's own cadences).
_OF_SENDER = (
    "SELECT hash FROM cadence_versions WHERE lower(json_extract(data, '$.sender.email')) = ?"
)
_TASK_ACTIONS = "(" + ",".join(f"'{a}'" for a in Action if a is not Action.SEND_EMAIL) + ")"
# Named: without statistics SQLite prefers step_runs_due and walks every due email.
_UPCOMING = _ROW_SELECT.replace(
    "FROM step_runs sr", "FROM step_runs sr INDEXED BY step_runs_planned_tasks"
) + (
    " WHERE sr.state = 'planned' AND sr.action != 'send email' AND sr.by_hand = 0"
    f" AND sr.action IN {_TASK_ACTIONS} AND e.state = 'active' AND sr.due_utc <= ?"
)
_END_STATES = frozenset(EnrolmentState) - {EnrolmentState.ACTIVE, EnrolmentState.PAUSED}


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
        if _disk_full(path):  # no room for the -wal and -shm at open: an I/O error
            return InputError(
                f"cannot use state store {path}: the disk is full ({exc})",
                hint=f"free some space on the disk of {path.parent} (SQLite writes "
                f"{path.name}-wal and {path.name}-shm beside it, and grows them), or {_DB_HINT}",
            )
        return UsageError(
            f"cannot use {path} as the state store: input/output error ({exc})",
            hint=f"it must be a regular file on a local disk; {_DB_HINT}",
        )
    return InputError(f"state store {path}: {exc}", hint=_DB_HINT)


_ROOM = 64 * 1024  # a -shm (32 KiB) and the first frames of a -wal


def _disk_full(path: Path) -> bool:
    """Too little room left on the store's file system (root may use reserved blocks)."""
    try:
        st = os.statvfs(path if path.exists() else path.parent)
    except OSError:
        return False
    free = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return free * st.f_frsize < _ROOM


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


class _Object(NamedTuple):
    kind: str  # table | index | trigger
    columns: frozenset[str]  # a table's; empty for the others
    sql: str  # a trigger's text, whitespace folded; empty for the others


@functools.cache
def expected_schema() -> dict[str, _Object]:
    """Every table, index and trigger the migrations create, by name."""
    db = sqlite3.connect(":memory:")
    try:
        for _, script in MIGRATIONS:
            for statement in _statements(script):
                db.execute(statement)
        return _schema_of(db)
    finally:
        db.close()


def _schema_of(db: sqlite3.Connection) -> dict[str, _Object]:
    out: dict[str, _Object] = {}
    for kind, name, sql in db.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('table', 'index', 'trigger') "
        "AND name NOT LIKE 'sqlite_%'"
    ).fetchall():
        columns = (
            frozenset(r[1] for r in db.execute(f'PRAGMA table_info("{name}")'))
            if kind == "table"
            else frozenset()
        )
        # A trigger's body is what it enforces (the append-only event log): compared too.
        text = " ".join(str(sql).split()) if kind == "trigger" else ""
        out[name] = _Object(kind, columns, text)
    return out


def schema_problems(db: sqlite3.Connection) -> list[str]:
    """Tables, columns, indexes and triggers of the migrations that the store lacks."""
    have = _schema_of(db)
    problems: list[str] = []
    for name, want in expected_schema().items():
        found = have.get(name)
        if found is None or found.kind != want.kind:
            problems.append(f"{want.kind} {name} is missing")
        elif missing := sorted(want.columns - found.columns):
            problems.append(
                f"table {name} lacks column{'s' * (len(missing) > 1)} " + ", ".join(missing)
            )
        elif found.sql != want.sql:
            problems.append(f"trigger {name} is not the one the migrations create")
    return problems


def integrity_problems(db: sqlite3.Connection, limit: int = 20) -> list[str]:
    """SQLite's integrity check, each damaged page or index named by its table."""
    roots = {
        int(r[0]): f"{r[1]} {r[2]}"
        for r in db.execute("SELECT rootpage, type, name FROM sqlite_master WHERE rootpage > 0")
    }
    out: list[str] = []
    try:
        rows = [str(r[0]) for r in db.execute(f"PRAGMA integrity_check({limit})")]
    except sqlite3.DatabaseError:
        # Too damaged for one pass: check table by table (each with its indexes).
        return _per_table_problems(db)
    missing: list[int] = []
    for line in (part for row in rows for part in row.splitlines()):
        if line == "ok" or line.startswith("*** in database"):
            continue
        tree = re.search(r"[Tt]ree (?:page )?(\d+)", line)
        owner = roots.get(int(tree.group(1))) if tree else None
        if owner is None and (page := re.fullmatch(r"invalid page number (\d+)", line)):
            missing.append(int(page.group(1)))  # one line for all of them, below
            continue
        out.append(f"{owner}: {line}" if owner else line)
    if missing:
        numbers = ", ".join(str(n) for n in sorted(missing))
        out.insert(0, f"pages {numbers} are referenced but lie beyond the end of the file")
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


def check_file(path: Path) -> list[str]:
    """`cadence store check` of one file: what is damaged, in words (empty: it is whole).

    It never creates a store (a typo in --db would be "ok"). A file too damaged to open
    as a store is examined as a file: its length against the pages its header counts, its
    schema page, then SQLite's integrity check if the schema can be read.
    """
    if not path.exists():
        raise UsageError(
            f"no state store at {path}: the file does not exist",
            hint="check --db / CADENCE_DB; `cadence store check` never creates a store",
        )
    try:
        with SqliteStore(path, check_schema=False) as store:
            problems = store.check()
    except CadenceError:
        found = _file_problems(path) + _unopened_problems(path)
        if not found:
            raise  # not damage: locked, unwritable, not a database …
        return found
    return _file_problems(path) + problems if problems else []


def _file_problems(path: Path) -> list[str]:
    """What the file's first 100 bytes (SQLite's header) say against its length."""
    try:
        with path.open("rb") as f:
            head = f.read(100)
        size = path.stat().st_size
        wal = Path(f"{path}-wal")
        pending = wal.exists() and wal.stat().st_size > 0
    except OSError:
        return []
    if len(head) < 100 or not head.startswith(b"SQLite format 3\0"):
        return []  # not a SQLite file at all: the open said so
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return [f"its header is unreadable (page size {page_size} is not one SQLite writes)"]
    pages = int.from_bytes(head[28:32], "big")
    # The count is valid when written with the change counter; pages in a -wal not yet
    # copied back can make the file itself shorter for a while.
    if head[92:96] != head[24:28] or pages == 0 or pending or size >= pages * page_size:
        return []
    return [
        f"the file is truncated: {size} bytes, where its header counts {pages} pages of "
        f"{page_size} bytes ({pages * page_size} bytes); pages {size // page_size + 1} to "
        f"{pages} are missing"
    ]


def _unopened_problems(path: Path) -> list[str]:
    """Damage of a file the store could not open: its schema page, then its pages."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error:
        return []
    try:
        db.execute("PRAGMA query_only = ON")
        # Reads a file shorter than its header says (else refused outright as malformed).
        db.execute("PRAGMA writable_schema = ON")
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            if not getattr(exc, "sqlite_errorname", "").startswith("SQLITE_CORRUPT"):
                return []
            return [
                f"its first pages (the schema, sqlite_master) are unreadable ({exc}): "
                "no table can be named"
            ]
        return integrity_problems(db)
    except sqlite3.Error:
        return []
    finally:
        db.close()


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


_FS_IOC_GETFLAGS = 0x80086601
_FS_IMMUTABLE_FL, _FS_APPEND_FL = 0x10, 0x20


def _unwritable_fd(fd: int) -> str | None:
    """Why the file behind `fd` can no longer be written, or None."""
    flags = array.array("l", [0])
    try:
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
    except OSError:
        flags[0] = 0  # no such attributes on this file system
    if flags[0] & _FS_IMMUTABLE_FL:
        return "it is immutable"
    if flags[0] & _FS_APPEND_FL:
        return "it is append-only"
    if os.fstatvfs(fd).f_flag & os.ST_RDONLY:
        return "its file system is mounted read-only"
    mode = os.fstat(fd).st_mode
    if os.geteuid() != 0 and not mode & 0o222:
        return "it is read-only"
    return None


# Descriptors of the store files this process holds, by file: how many stores use each
# file and every descriptor opened on it. Closing any descriptor of a file drops all of
# the process's POSIX locks on it (SQLite's -shm locks included, those of every other
# store open in the process: the web server keeps one per thread), so they are closed
# only when the last store using the file closes.
_HELD_LOCK = threading.Lock()
_HELD: dict[tuple[int, int], tuple[int, list[int]]] = {}


def _hold(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    with _HELD_LOCK:
        users, fds = _HELD.get(key, (0, []))
        fds.append(fd)
        _HELD[key] = (users + 1, fds)
    return key


def _let_go(key: tuple[int, int]) -> None:
    with _HELD_LOCK:
        users, fds = _HELD[key]
        if users > 1:
            _HELD[key] = (users - 1, fds)
            return
        del _HELD[key]
    for fd in fds:
        os.close(fd)


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: SqliteStore, *args: Any, **kwargs: Any) -> Any:
        if not self._batch_depth:  # a batch looked when it began, microseconds ago
            self._check_writable()
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None

    return wrapper


def _translating(cls: type[SqliteStore]) -> type[SqliteStore]:
    """Every public method of the store reports SQLite errors through `store_error`."""
    for name, attr in list(vars(cls).items()):
        if callable(attr) and not name.startswith("_") and name not in ("close", "clock"):
            setattr(cls, name, _translated(attr))
    return cls


def _filtered(query: str, args: list[Any], where: TaskFilter) -> tuple[str, list[Any]]:
    return filtered(query, args, where, mark="?", of_sender=_OF_SENDER, due="sr.due_utc")


_row = StepRow.from_columns
_BY_STEP = operator.attrgetter("step_index")  # an enrolment's step runs in file order


def _enrolment(r: tuple[Any, ...]) -> EnrolmentRecord:
    return EnrolmentRecord(
        id=r[0],
        uid=r[1],
        cadence_name=r[2],
        cadence_hash=r[3],
        email=r[4],
        contact=r[5],
        unsubscribe_token=r[6],
        state=EnrolmentState(r[7]),
        success=bool(r[8]),
        launched_utc=r[9],
        ended_utc=r[10],
        paused_utc=r[11],
        paused_until=r[12],
    )


@_translating
class SqliteStore:
    """The store contract on one SQLite file. One connection; not shared between threads."""

    def __init__(self, path: Path, *, check_schema: bool = True) -> None:
        self.path = path
        refuse_unusable_path(path)
        self._watched: list[tuple[str, int]] = []
        self._held: list[tuple[int, int]] = []
        self._files: list[tuple[str, tuple[int, int]]] = []  # (path, (st_dev, st_ino))
        self._abandoned = False
        self._batch_depth = 0  # > 0: inside `batch`, whose transaction writes join
        # The last claim's rows as read back (columns → StepRow) and the database's state
        # right after its commit; see `step_runs_of`.
        self._claimed: dict[int, tuple[tuple[Any, ...], StepRow]] = {}
        self._claim_mark: tuple[int, int] | None = None
        self._check_writable(only=("-wal", "-shm"))  # an unwritable -shm is a SIGBUS on read
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
        except sqlite3.Error as exc:
            self._close_watched()
            raise store_error(path, exc) from None
        try:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._wal()
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
            self._db.execute("SELECT count(*) FROM fences").fetchone()  # -wal and -shm exist
            if check_schema:
                problems = schema_problems(self._db)
                if problems:
                    raise damaged(path, problems)
        except sqlite3.Error as exc:
            self._db.close()
            self._close_watched()
            raise store_error(path, exc) from None
        except BaseException:
            self._db.close()
            self._close_watched()
            raise
        watched = self._watch()
        self._watched += watched
        keys = [_hold(fd) for _, fd in watched]
        self._held += keys
        # The files SQLite has open now (the read above made the -wal and -shm); those
        # opened before connecting may be ones another process deleted as it closed.
        self._files = [(name, key) for (name, _), key in zip(watched, keys, strict=True)]

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        if self._abandoned:
            # Closing would checkpoint through the unwritable -shm mapping: a SIGBUS. Keep
            # the connection alive for good (no transaction is open: the check came first);
            # the process's exit releases its file and locks.
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(self._db))
            return
        self._db.close()
        self._close_watched()  # after SQLite's own; closed when no other store has the file

    def _close_watched(self) -> None:
        for key in self._held:
            _let_go(key)
        self._watched, self._held = [], []

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        try:
            with self._write():
                self._batch_depth += 1
                try:
                    yield
                finally:
                    self._batch_depth -= 1
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self._batch_depth:  # inside `batch`: its transaction commits or rolls back
            yield self._db
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back already (I/O, full)
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _check_writable(self, only: tuple[str, ...] = ()) -> None:
        """Refuse to go on when the file or its -wal/-shm can no longer be written.

        SQLite maps `-shm` into memory and writes to it on reads too (read marks): once
        that file turns read-only or immutable under a running process, the next access
        is a SIGBUS that kills it. So every operation first looks at the files it holds,
        and at their paths: a store deleted or replaced under a running command would take
        its writes into a file nobody opens again (two stat calls' worth, ~1 µs each).
        It never closes a descriptor of them before the store closes: closing any
        descriptor of a file drops this process's POSIX locks on it, SQLite's included,
        and those of every other store open in the process (the web server keeps one per
        thread): another process would then take the -shm for unused and truncate it
        under this one's mapping, a SIGBUS. Before the connection exists (`only`), the
        files are opened for writing, and kept open with the watched ones.
        """
        if only:
            for suffix in only:
                name = f"{self.path}{suffix}"
                try:
                    fd = os.open(name, os.O_WRONLY)
                    self._watched.append((name, fd))
                    self._held.append(_hold(fd))
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    self._close_watched()
                    raise self._unwritable(name, exc.strerror or str(exc)) from None
            return
        for name, key in self._files:
            try:
                st = os.stat(name)
            except FileNotFoundError:
                self._abandoned = True
                raise self._replaced(name, "is gone") from None
            except OSError:
                continue  # (a folder turned unreadable) SQLite reports what it means
            if (st.st_dev, st.st_ino) != key:
                self._abandoned = True
                raise self._replaced(name, "is another file now")
        for name, fd in self._watched:
            why = _unwritable_fd(fd)
            if why is not None:
                self._abandoned = True
                raise self._unwritable(name, why)

    def _replaced(self, name: str, what: str) -> UsageError:
        # Abandoned like an unwritable store: its close would checkpoint into the deleted
        # file and then unlink `name`, the -wal and -shm of whatever store is there now.
        return UsageError(
            f"state store {self.path} was deleted or replaced while this command ran; "
            f"{name} {what}, and what this command would write next would go into the "
            "deleted file and be lost",
            hint=f"restore {self.path} from a backup, or point CADENCE_DB / --db at the store "
            "where it is now (a new, empty store in its place would enrol every contact "
            "again); what was committed before is in the old file",
        )

    def _unwritable(self, name: str, why: str) -> UsageError:
        return UsageError(
            f"cannot write to state store {self.path}: {name} is no longer writable ({why})",
            hint=f"make {self.path}, its -wal and -shm files and its folder writable again; "
            "nothing of this step was written, and the next run goes on",
        )

    def _watch(self) -> list[tuple[str, int]]:
        """Descriptors of the store's files, held open until the store closes."""
        out: list[tuple[str, int]] = []
        if not os.access(self.path, os.W_OK):
            return out  # opened read-only on purpose: nothing to guard
        for suffix in ("", "-wal", "-shm"):
            name = f"{self.path}{suffix}"
            try:
                out.append((name, os.open(name, os.O_RDONLY)))
            except OSError:
                continue
        return out

    def _wal(self) -> None:
        """Switch to WAL. Two connections switching a new file at once: SQLite answers
        the loser `database is locked` at once, without waiting (no busy handler runs
        for the mode change), so it is asked again until the busy timeout is over."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.002)

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

    def clock(self) -> float:
        # One machine's file: its wall clock is the store's clock.
        return time.time()

    def _rows(self, where: str, args: Sequence[Any] = ()) -> list[StepRow]:
        return [_row(r) for r in self._db.execute(_ROW_SELECT + where, args).fetchall()]

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
            raise NotFound(f"cadence version {cadence_hash} is not in the state store")
        return str(row[0]), str(row[1])

    def versions(self) -> dict[str, tuple[str, str]]:
        rows = self._db.execute("SELECT hash, name, data FROM cadence_versions").fetchall()
        return {h: (n, d) for h, n, d in rows}

    def launch(
        self,
        cadence_name: str,
        cadence_hash: str,
        enrolments: Iterable[NewEnrolment],
        now: int,
        *,
        allow_overlap: bool = False,
    ) -> LaunchResult:
        enrolled: list[str] = []
        already: list[str] = []
        suppressed: list[str] = []
        overlapping: list[tuple[str, str]] = []
        with self._write() as db:
            for new in enrolments:
                if db.execute(
                    "SELECT 1 FROM suppressions WHERE email = ?", (new.email,)
                ).fetchone():
                    suppressed.append(new.email)
                    continue
                if not allow_overlap:
                    other = db.execute(
                        f"SELECT cadence_name FROM enrolments WHERE email = ? "
                        f"AND state IN {_RUNNING} AND cadence_name != ? ORDER BY id LIMIT 1",
                        (new.email, cadence_name),
                    ).fetchone()
                    if other is not None:
                        overlapping.append((new.email, str(other[0])))
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
                    "zone, due_utc, planned_utc, thread_step_id, message_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            enrolment_id,
                            s.step_id,
                            s.step_index,
                            s.day,
                            str(s.action),
                            s.zone,
                            s.due_utc,
                            s.due_utc,
                            s.thread_step_id,
                            s.message_id,
                        )
                        for s in new.steps
                    ],
                )
                db.execute(
                    _EVENT,
                    (now, "launched", new.email, enrolment_id, None, cadence_hash, "command"),
                )
                enrolled.append(new.email)
        return LaunchResult(tuple(enrolled), tuple(already), tuple(suppressed), tuple(overlapping))

    # -- the work queue -------------------------------------------------------------------

    def _expire_leases(self, db: sqlite3.Connection, clock: float, now: int) -> None:
        # Claimed but never marked sending: nothing was handed over, so claim again.
        db.execute(
            "UPDATE step_runs SET state = 'planned', fence = NULL, lease_until = NULL "
            "WHERE state = 'claimed' AND lease_until < ?",
            (clock,),
        )
        # In `sending` when its runner died: it may or may not have gone out. Never resend
        # automatically; an operator settles it with `cadence resolve`.
        expired = db.execute(
            "SELECT sr.id, sr.enrolment_id, e.email, sr.message_id FROM step_runs sr "
            "JOIN enrolments e ON e.id = sr.enrolment_id "
            "WHERE sr.state = 'sending' AND sr.lease_until < ?",
            (clock,),
        ).fetchall()
        if expired:
            db.executemany(
                "UPDATE step_runs SET state = 'unknown', "
                "answer = 'runner stopped while sending' WHERE id = ?",
                [(r[0],) for r in expired],
            )
            db.executemany(
                _EVENT, [(now, "unknown", r[2], r[1], r[0], r[3], "runner") for r in expired]
            )

    def _fence(self, db: sqlite3.Connection) -> int:
        (fence,) = db.execute(
            "UPDATE fences SET last = last + 1 WHERE id = 1 RETURNING last"
        ).fetchone()
        return int(fence)

    def claim(self, now: int, limit: int, lease_seconds: float) -> Claim:
        with self._write() as db:
            clock = self.clock()
            self._expire_leases(db, clock, now)
            fence = self._fence(db)
            found = db.execute(_DUE, (now, limit)).fetchall()
            until = clock + lease_seconds
            for chunk in batched([r[0] for r in found]):  # one statement per chunk
                db.execute(
                    "UPDATE step_runs SET state = 'claimed', fence = ?, lease_until = ? "
                    f"WHERE id IN ({','.join('?' * len(chunk))})",
                    (fence, until, *chunk),
                )
        # As the rows now are: claimed under `fence` until `until`.
        now_rows = [(*r[:19], "claimed", fence, *r[21:30], until, *r[31:]) for r in found]
        rows = tuple(map(_row, now_rows))
        self._claimed = {r[0]: (r, row) for r, row in zip(now_rows, rows, strict=True)}
        # (inside `batch` nothing is committed yet: a rollback would undo the claim)
        self._claim_mark = self._mark() if not self._batch_depth else None
        return Claim(fence=fence, rows=rows)

    def _mark(self) -> tuple[int, int]:
        """What tells whether the file changed: `data_version` moves when another
        connection commits, `total_changes` when this one writes (even if rolled back)."""
        (version,) = self._db.execute("PRAGMA data_version").fetchone()
        return int(version), self._db.total_changes

    def _stopped(self, db: sqlite3.Connection, ids: list[int]) -> dict[int, OutcomeKind]:
        out: dict[int, OutcomeKind] = {}
        for chunk in batched(ids):
            marks = ",".join("?" * len(chunk))
            for step_run_id, state in db.execute(
                f"SELECT sr.id, e.state FROM step_runs sr JOIN enrolments e "
                f"ON e.id = sr.enrolment_id WHERE sr.id IN ({marks}) AND (e.state != 'active' "
                f"OR sr.state = 'cancelled' "
                f"OR EXISTS (SELECT 1 FROM suppressions s WHERE s.email = e.email))",
                chunk,
            ):
                paused = state == EnrolmentState.PAUSED
                out[step_run_id] = OutcomeKind.RELEASED if paused else OutcomeKind.CANCELLED
        return out

    def begin_sending(self, fence: int, ids: Iterable[int]) -> set[int]:
        wanted = list(ids)
        with self._write() as db:
            # A signal recorded since the claim wins: check again under the write lock.
            stopped = self._stopped(db, wanted)
            db.executemany(
                "UPDATE step_runs SET state = 'cancelled', answer = 'stopped by a signal' "
                "WHERE id = ? AND fence = ? AND state = 'claimed'",
                [(i, fence) for i, k in stopped.items() if k is OutcomeKind.CANCELLED],
            )
            db.executemany(
                "UPDATE step_runs SET state = 'planned', fence = NULL, lease_until = NULL "
                "WHERE id = ? AND fence = ? AND state = 'claimed'",
                [(i, fence) for i, k in stopped.items() if k is OutcomeKind.RELEASED],
            )
            for chunk in batched([i for i in wanted if i not in stopped]):  # one per chunk
                db.execute(
                    "UPDATE step_runs SET state = 'sending' "
                    f"WHERE id IN ({','.join('?' * len(chunk))}) AND fence = ? "
                    "AND state = 'claimed'",
                    (*chunk, fence),
                )
            ours: set[int] = set()
            for chunk in batched(wanted):
                marks = ",".join("?" * len(chunk))
                ours.update(
                    r[0]
                    for r in db.execute(
                        f"SELECT id FROM step_runs WHERE id IN ({marks}) AND fence = ? "
                        "AND state = 'sending'",
                        (*chunk, fence),
                    )
                )
        return ours

    def stopped(self, ids: Iterable[int]) -> dict[int, OutcomeKind]:
        return self._stopped(self._db, list(ids))

    def finish(self, fence: int, outcomes: Iterable[Outcome]) -> None:
        outcomes = list(outcomes)
        with self._write() as db:
            # Which rows are still ours, in one read per chunk (not one per outcome).
            ours: dict[int, tuple[int, str, str | None, str]] = {}
            for chunk in batched([o.step_run_id for o in outcomes]):
                marks = ",".join("?" * len(chunk))
                for r in db.execute(
                    "SELECT sr.id, sr.enrolment_id, e.email, sr.message_id, sr.action "
                    "FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id "
                    f"WHERE sr.id IN ({marks}) AND sr.fence = ? "
                    "AND sr.state IN ('claimed', 'sending', 'unknown')",
                    (*chunk, fence),
                ):
                    ours[r[0]] = r[1:]
            sent: list[tuple[Any, ...]] = []
            moves: list[tuple[Any, ...]] = []
            released: list[tuple[Any, ...]] = []
            again: list[tuple[Any, ...]] = []
            settled: list[tuple[Any, ...]] = []
            events: list[tuple[Any, ...]] = []
            for o in outcomes:
                info = ours.get(o.step_run_id)
                if info is None:  # no longer ours: another runner's fence took it
                    continue
                enrolment_id, email, message_id, action = info
                state = str(OUTCOME_STATE[o.kind])
                if o.kind is OutcomeKind.SENT:
                    sent.append(
                        (state, o.at_utc, o.answer or None, o.unsubscribe_url, o.step_run_id)
                    )
                    events.append(
                        (o.at_utc, "sent", email, enrolment_id, o.step_run_id, message_id, "runner")
                    )
                    for move in o.followers:
                        moves.append((move.due_utc, move.planned_utc, move.step_run_id))
                        events.append(
                            (
                                o.at_utc,
                                "rescheduled",
                                email,
                                enrolment_id,
                                move.step_run_id,
                                move.reason,
                                "runner",
                            )
                        )
                    continue
                if o.kind is OutcomeKind.RELEASED:
                    released.append((o.step_run_id,))
                    continue
                if o.kind in (OutcomeKind.RETRY, OutcomeKind.RESCHEDULED):
                    again.append(
                        (
                            o.retry_utc,
                            int(o.kind is OutcomeKind.RETRY),
                            o.answer if o.kind is OutcomeKind.RETRY else None,
                            o.step_run_id,
                        )
                    )
                else:
                    settled.append((state, o.answer or None, o.unsubscribe_url, o.step_run_id))
                detail = action if o.kind is OutcomeKind.OPENED else o.answer
                kind = OUTCOME_EVENT[o.kind]
                events.append(
                    (o.at_utc, kind, email, enrolment_id, o.step_run_id, detail, "runner")
                )
            db.executemany(
                "UPDATE step_runs SET state = ?, sent_utc = ?, answer = ?, unsubscribe_url = ?, "
                "lease_until = NULL WHERE id = ?",
                sent,
            )
            db.executemany(
                "UPDATE step_runs SET due_utc = ?, planned_utc = ? "
                "WHERE id = ? AND state = 'planned'",
                moves,
            )
            db.executemany(
                "UPDATE step_runs SET state = 'planned', fence = NULL, lease_until = NULL "
                "WHERE id = ?",
                released,
            )
            db.executemany(
                "UPDATE step_runs SET state = 'planned', fence = NULL, lease_until = NULL, "
                "due_utc = ?, attempts = attempts + ?, answer = coalesce(?, answer) WHERE id = ?",
                again,
            )
            db.executemany(
                "UPDATE step_runs SET state = ?, answer = ?, "
                "unsubscribe_url = coalesce(?, unsubscribe_url), lease_until = NULL WHERE id = ?",
                settled,
            )
            db.executemany(_EVENT, events)

    def release(self, fence: int) -> int:
        with self._write() as db:
            return db.execute(
                "UPDATE step_runs SET state = 'planned', fence = NULL, lease_until = NULL "
                "WHERE fence = ? AND state = 'claimed'",
                (fence,),
            ).rowcount

    def book_sends(self, sender: str, day: str, limit: int, wanted: int) -> int:
        with self._write() as db:
            db.execute(
                "INSERT INTO sender_days VALUES (?, ?, 0) ON CONFLICT (sender, day) DO NOTHING",
                (sender, day),
            )
            (before,) = db.execute(
                "SELECT sent FROM sender_days WHERE sender = ? AND day = ?", (sender, day)
            ).fetchone()
            found = db.execute(
                "UPDATE sender_days SET sent = min(?, sent + ?) "
                "WHERE sender = ? AND day = ? AND sent < ? RETURNING sent",
                (limit, wanted, sender, day, limit),
            ).fetchone()
        return 0 if found is None else int(found[0]) - int(before)

    def take_task_email(
        self, step_run_id: int, subject: str, body: str, lease_seconds: float
    ) -> int | None:
        with self._write() as db:
            fence = self._fence(db)
            taken = db.execute(
                "UPDATE step_runs SET state = 'claimed', fence = ?, lease_until = ?, "
                "by_hand = 1, subject = ?, body = ? "
                "WHERE id = ? AND state = 'open' AND action = 'email task'",
                (fence, self.clock() + lease_seconds, subject, body, step_run_id),
            ).rowcount
        return fence if taken else None

    # -- enrolments -----------------------------------------------------------------------

    def enrolments(
        self,
        *,
        email: str | None = None,
        cadence: str | None = None,
        states: Sequence[EnrolmentState] = (),
    ) -> list[EnrolmentRecord]:
        where: list[str] = []
        args: list[Any] = []
        if email is not None:
            where.append("email = ?")
            args.append(email.lower())
        if cadence is not None:
            where.append("cadence_name = ?")
            args.append(cadence)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(str(s) for s in states)
        query = _ENROLMENT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return [_enrolment(r) for r in self._db.execute(query, args).fetchall()]

    def enrolment(self, enrolment_id: int) -> EnrolmentRecord | None:
        found = self._db.execute(_ENROLMENT + " WHERE id = ?", (enrolment_id,)).fetchone()
        return _enrolment(found) if found is not None else None

    def enrolments_by_token(self, token: str) -> list[EnrolmentRecord]:
        found = self._db.execute(_ENROLMENT + " WHERE unsubscribe_token = ?", (token,)).fetchall()
        if not found:  # rare (a lower-cased plus address): a scan is fine
            found = self._db.execute(
                _ENROLMENT + " WHERE lower(unsubscribe_token) = lower(?) ORDER BY id", (token,)
            ).fetchall()
        return [_enrolment(r) for r in found]

    def end_enrolments(self, endings: Sequence[Ending], now: int) -> int:
        marks = [e for e in endings if e.state == e.expected]
        ends = [e for e in endings if e.state != e.expected]
        with self._write() as db:
            db.executemany(
                "UPDATE enrolments SET success = max(success, ?) WHERE id = ? AND state = ?",
                [(int(e.success), e.enrolment_id, str(e.expected)) for e in marks],
            )
            db.executemany(
                "UPDATE enrolments SET state = ?, ended_utc = ?, success = max(success, ?), "
                "paused_utc = NULL, paused_until = NULL WHERE id = ? AND state = ?",
                [
                    (str(e.state), now, int(e.success), e.enrolment_id, str(e.expected))
                    for e in ends
                ],
            )
            # An ended enrolment runs nothing more. Claimed rows belong to a runner that
            # has not committed `sending`: its begin_sending sees them cancelled. Rows
            # already `sending` are caught by the runner's last check before the transport.
            before = db.total_changes
            db.executemany(
                "UPDATE step_runs SET state = 'cancelled', answer = ? "
                "WHERE enrolment_id = ? AND state IN ('planned', 'claimed', 'open') "
                "AND (SELECT state FROM enrolments WHERE id = ?) = ?",
                [
                    (
                        e.reason or f"stopped: {e.state}",
                        e.enrolment_id,
                        e.enrolment_id,
                        str(e.state),
                    )
                    for e in ends
                    if e.state in _END_STATES and e.state is not EnrolmentState.COMPLETED
                ],
            )
            return db.total_changes - before

    def pause(
        self, enrolment_id: int, now: int, until: int | None, reason: str, source: str = "command"
    ) -> bool:
        with self._write() as db:
            changed = db.execute(
                "UPDATE enrolments SET state = 'paused', paused_utc = ?, paused_until = ? "
                "WHERE id = ? AND state = 'active'",
                (now, until, enrolment_id),
            ).rowcount
            if changed:
                self._log_enrolment(db, enrolment_id, now, "paused", reason, source)
        return bool(changed)

    def resume(self, enrolment_id: int, now: int, moves: Sequence[Move]) -> bool:
        with self._write() as db:
            changed = db.execute(
                "UPDATE enrolments SET state = 'active', paused_utc = NULL, paused_until = NULL "
                "WHERE id = ? AND state = 'paused'",
                (enrolment_id,),
            ).rowcount
            if changed:
                self._log_enrolment(db, enrolment_id, now, "resumed", "")
                self._move(db, moves, now)
        return bool(changed)

    def _log_enrolment(
        self,
        db: sqlite3.Connection,
        enrolment_id: int,
        now: int,
        kind: str,
        detail: str,
        source: str = "command",
    ) -> None:
        db.execute(
            "INSERT INTO events (at_utc, kind, email, enrolment_id, detail, source) "
            "SELECT ?, ?, email, id, ?, ? FROM enrolments WHERE id = ?",
            (now, kind, detail, source, enrolment_id),
        )

    # -- step runs and tasks --------------------------------------------------------------

    def step_run(self, step_run_id: int) -> StepRow | None:
        found = self._rows(" WHERE sr.id = ?", (step_run_id,))
        return found[0] if found else None

    def step_runs(self, enrolment_id: int) -> list[StepRow]:
        return self._rows(" WHERE sr.enrolment_id = ? ORDER BY sr.step_index", (enrolment_id,))

    def step_runs_of(self, enrolment_ids: Iterable[int]) -> dict[int, list[StepRow]]:
        wanted = list(dict.fromkeys(enrolment_ids))
        if self._claimed and self._claim_mark is not None and self._mark() == self._claim_mark:
            # Nothing was written since the last claim committed, by this connection or
            # any other: its rows are exactly as that claim built them. Only the other
            # step runs of their enrolments are read.
            return self._with_claimed(wanted)
        return self._read_step_runs(wanted)

    def _read_step_runs(self, enrolment_ids: list[int]) -> dict[int, list[StepRow]]:
        out: dict[int, list[StepRow]] = {}
        claimed = self._claimed
        for chunk in batched(enrolment_ids):
            marks = ",".join("?" * len(chunk))
            query = f" WHERE sr.enrolment_id IN ({marks}) ORDER BY sr.enrolment_id, sr.step_index"
            for r in self._db.execute(_ROW_SELECT + query, chunk).fetchall():
                # A row of the last claim, read back unchanged, is the StepRow that claim
                # built (a pure function of the columns): not decoded a second time.
                known = claimed.get(r[0])
                row = known[1] if known is not None and known[0] == r else _row(r)
                out.setdefault(r[1], []).append(row)
        return out

    def _with_claimed(self, wanted: list[int]) -> dict[int, list[StepRow]]:
        """`step_runs_of(wanted)` when the last claim's rows are known unchanged."""
        asked = set(wanted)
        claimed = [row for _, row in self._claimed.values()]
        fence = claimed[0].fence  # one claim, one fence
        found: dict[int, list[StepRow]] = {}
        for row in claimed:
            if row.enrolment_id in asked:
                found.setdefault(row.enrolment_id, []).append(row)
        for chunk in batched(list(found)):
            marks = ",".join("?" * len(chunk))
            query = (
                f" WHERE sr.enrolment_id IN ({marks}) "
                "AND NOT (sr.state = 'claimed' AND sr.fence = ?)"
            )
            for r in self._db.execute(_ROW_SELECT + query, (*chunk, fence)):
                found[r[1]].append(_row(r))
        out = {e: sorted(rows, key=_BY_STEP) for e, rows in found.items()}
        out.update(self._read_step_runs([e for e in wanted if e not in found]))
        return {e: out[e] for e in sorted(out)}

    def step_run_by_message_id(self, message_id: str) -> StepRow | None:
        found = self._rows(" WHERE sr.message_id = ? ORDER BY sr.id LIMIT 1", (message_id,))
        return found[0] if found else None

    def tasks(self, where: TaskFilter) -> list[StepRow]:
        query = " WHERE sr.state = ? AND (sr.action != 'send email' OR sr.by_hand)"
        args: list[Any] = [str(where.state)]
        if where.due_before is not None:
            query += " AND sr.due_utc <= ?"
            args.append(where.due_before)
        return self._rows(*_filtered(query, args, where))

    def upcoming_tasks(self, until_utc: int, where: TaskFilter = NO_FILTER) -> list[StepRow]:
        query, args = _filtered(_UPCOMING, [until_utc], where)  # (its own SELECT: an index)
        return [_row(r) for r in self._db.execute(query, args).fetchall()]

    def _move(self, db: sqlite3.Connection, moves: Sequence[Move], now: int) -> None:
        for m in moves:
            if db.execute(
                "UPDATE step_runs SET due_utc = ?, planned_utc = ? WHERE id = ? "
                "AND state = 'planned'",
                (m.due_utc, m.planned_utc, m.step_run_id),
            ).rowcount:
                db.execute(
                    "INSERT INTO events (at_utc, kind, email, enrolment_id, step_run_id, "
                    "detail, source) SELECT ?, 'rescheduled', e.email, e.id, sr.id, ?, "
                    "'command' FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id "
                    "WHERE sr.id = ?",
                    (now, m.reason, m.step_run_id),
                )

    def move_steps(self, moves: Sequence[Move], now: int) -> None:
        with self._write() as db:
            self._move(db, moves, now)

    def settle_task(
        self, step_run_id: int, state: StepState, now: int, moves: Sequence[Move]
    ) -> bool:
        with self._write() as db:
            if not db.execute(
                "UPDATE step_runs SET state = ?, done_utc = ? WHERE id = ? AND state = 'open'",
                (str(state), now, step_run_id),
            ).rowcount:
                return False
            kind = "task done" if state is StepState.DONE else "task skipped"
            db.execute(
                "INSERT INTO events (at_utc, kind, email, enrolment_id, step_run_id, detail, "
                "source) SELECT ?, ?, e.email, e.id, sr.id, sr.action, 'command' "
                "FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id WHERE sr.id = ?",
                (now, kind, step_run_id),
            )
            self._move(db, moves, now)
        return True

    def schedule_task_email(self, step_run_id: int, subject: str, body: str, due_utc: int) -> bool:
        with self._write() as db:
            if not db.execute(
                "UPDATE step_runs SET state = 'planned', by_hand = 1, subject = ?, body = ?, "
                "due_utc = ? WHERE id = ? AND state = 'open' AND action = 'email task'",
                (subject, body, due_utc, step_run_id),
            ).rowcount:
                return False
            db.execute(
                "INSERT INTO events (at_utc, kind, email, enrolment_id, step_run_id, detail, "
                "source) SELECT ?, 'rescheduled', e.email, e.id, sr.id, 'sent by a rep', "
                "'command' FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id "
                "WHERE sr.id = ?",
                (due_utc, step_run_id),
            )
        return True

    # -- signals, suppressions, events ----------------------------------------------------

    def record_signal(self, signal: Signal) -> bool:
        with self._write() as db:
            if signal.kind is not SignalKind.AUTO_REPLY:  # each auto-reply pauses anew
                new = db.execute(
                    "INSERT OR IGNORE INTO signals VALUES (?, ?, ?, ?)",
                    (str(signal.kind), signal.email, signal.cadence_name or "", signal.at_utc),
                ).rowcount
                if not new:
                    return False
            db.execute(
                _EVENT,
                (
                    signal.at_utc,
                    str(signal.kind),
                    signal.email,
                    None,
                    None,
                    signal.detail or signal.cadence_name,
                    signal.source,
                ),
            )
        return True

    def suppress(self, email: str, reason: str, now: int) -> bool:
        with self._write() as db:
            return bool(
                db.execute(
                    "INSERT OR IGNORE INTO suppressions VALUES (?, ?, ?)",
                    (email.lower(), reason, now),
                ).rowcount
            )

    def is_suppressed(self, email: str) -> bool:
        found = self._db.execute(
            "SELECT 1 FROM suppressions WHERE email = ?", (email.lower(),)
        ).fetchone()
        return found is not None

    def add_event(self, event: EventRecord) -> None:
        with self._write() as db:
            db.execute(
                _EVENT,
                (
                    event.at_utc,
                    event.kind,
                    event.email,
                    event.enrolment_id,
                    event.step_run_id,
                    event.detail,
                    event.source,
                ),
            )

    def events(
        self,
        *,
        step_run_id: int | None = None,
        email: str | None = None,
        enrolment_id: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[EventRecord]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("step_run_id", step_run_id),
            ("email", email.lower() if email is not None else None),
            ("enrolment_id", enrolment_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        query = (
            "SELECT at_utc, kind, coalesce(email, ''), coalesce(detail, ''), enrolment_id, "
            "step_run_id, coalesce(source, ''), id FROM events"
            + (" WHERE " + " AND ".join(where) if where else "")
            + (" ORDER BY id DESC" if newest_first else " ORDER BY id")
        )
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        return [EventRecord(*r) for r in self._db.execute(query, args).fetchall()]

    def latest_events(
        self, kinds: Sequence[str], limit: int, *, sender: str | None = None
    ) -> list[EventRecord]:
        query = (
            "SELECT ev.at_utc, ev.kind, coalesce(ev.email, ''), coalesce(ev.detail, ''), "
            "ev.enrolment_id, ev.step_run_id, coalesce(ev.source, ''), ev.id FROM events ev "
            "LEFT JOIN step_runs sr ON sr.id = ev.step_run_id "
            "LEFT JOIN enrolments e ON e.id = coalesce(ev.enrolment_id, sr.enrolment_id) "
            f"WHERE ev.kind IN ({','.join('?' * len(kinds))})"
        )
        args: list[Any] = list(kinds)
        if sender is not None:
            # About a contact of theirs, and not about an enrolment in someone else's cadence.
            query += (
                " AND ev.email IN (SELECT email FROM enrolments "
                f"WHERE cadence_hash IN ({_OF_SENDER})) "
                f"AND (e.cadence_hash IS NULL OR e.cadence_hash IN ({_OF_SENDER}))"
            )
            args += [sender.lower(), sender.lower()]
        query += " ORDER BY ev.at_utc DESC, ev.id DESC LIMIT ?"
        args.append(limit)
        return [EventRecord(*r) for r in self._db.execute(query, args).fetchall()]

    # -- inbound mail ---------------------------------------------------------------------

    def cursor(self, mailbox: str) -> Cursor | None:
        found = self._db.execute(
            "SELECT uidvalidity, last_uid FROM mailbox_cursors WHERE mailbox = ?", (mailbox,)
        ).fetchone()
        return Cursor(int(found[0]), int(found[1])) if found is not None else None

    def set_cursor(self, mailbox: str, cursor: Cursor) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO mailbox_cursors VALUES (?, ?, ?) ON CONFLICT (mailbox) DO UPDATE "
                "SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid",
                (mailbox, cursor.uidvalidity, cursor.last_uid),
            )

    def remember_inbound(self, key: str, mailbox: str, now: int) -> bool:
        with self._write() as db:
            return bool(
                db.execute(
                    "INSERT OR IGNORE INTO inbound_seen VALUES (?, ?, ?)", (key, mailbox, now)
                ).rowcount
            )

    def seen_inbound(self, keys: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        for chunk in batched(dict.fromkeys(keys)):
            marks = ",".join("?" * len(chunk))
            seen.update(
                str(r[0])
                for r in self._db.execute(
                    f"SELECT key FROM inbound_seen WHERE key IN ({marks})", chunk
                )
            )
        return seen

    # -- views ----------------------------------------------------------------------------

    def status(self, now: int) -> list[VersionStatus]:
        out: list[VersionStatus] = []
        clock = self.clock()
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
            steps: dict[str, int] = {}
            for key, n in self._db.execute(
                _STEP_COUNTS, {"now": now, "clock": clock, "hash": cadence_hash}
            ).fetchall():
                steps[key] = steps.get(key, 0) + n
            out.append(
                VersionStatus(
                    cadence_name=name,
                    cadence_hash=cadence_hash,
                    sender=sender,
                    enrolled=sum(states.values()),
                    active=states.get("active", 0),
                    paused=states.get("paused", 0),
                    finished={
                        k: states.get(k, 0)
                        for k in ("replied", "bounced", "unsubscribed", "completed", "removed")
                    },
                    successes=int(successes),
                    sent=steps.get("sent", 0),
                    due=steps.get("planned:due", 0),
                    held=steps.get("planned:held", 0),
                    open_tasks=steps.get("open", 0),
                    failed=steps.get("failed", 0),
                    retrying=sum(n for k, n in steps.items() if k.startswith("retrying")),
                    claimed=steps.get("claimed", 0),
                    sending=steps.get("sending", 0),
                    unknown=steps.get("unknown", 0),
                )
            )
        return out

    def unknown_sends(self) -> list[StepRow]:
        return self._rows(
            " WHERE sr.state = 'unknown' OR (sr.state = 'sending' AND sr.lease_until < ?) "
            "ORDER BY sr.id",
            (self.clock(),),
        )

    def resolve(self, step_run_id: int, sent: bool, now: int) -> bool:
        with self._write() as db:
            row = db.execute(
                "SELECT state, lease_until FROM step_runs WHERE id = ?", (step_run_id,)
            ).fetchone()
            stale = row is not None and row[0] == "sending" and (row[1] or 0) < self.clock()
            if row is None or not (row[0] == "unknown" or stale):
                return False
            if sent:
                db.execute(
                    "UPDATE step_runs SET state = 'sent', sent_utc = ?, fence = NULL, "
                    "lease_until = NULL WHERE id = ?",
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
            db.execute(
                "INSERT INTO events (at_utc, kind, email, enrolment_id, step_run_id, detail, "
                "source) SELECT ?, 'resolved', e.email, e.id, sr.id, ?, 'command' "
                "FROM step_runs sr JOIN enrolments e ON e.id = sr.enrolment_id WHERE sr.id = ?",
                (now, "sent" if sent else "resend", step_run_id),
            )
        return True


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
