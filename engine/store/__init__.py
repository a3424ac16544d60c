"""The state store: the contract (`engine.store.contract`) and `open_store` by URL.

Everything a command or the runner needs from durable state goes through the two
protocols of the contract, `WorkQueue` and `Repository`; the rules that decide live in
the engine (`engine.lifecycle`, `engine.policy`), never in a store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from ..errors import UsageError
from .contract import (
    HOLDING,
    MAX_ROW_ID,
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
    NewStep,
    Outcome,
    OutcomeKind,
    Repository,
    Signal,
    SignalKind,
    StepRow,
    StepState,
    Store,
    TaskFilter,
    VersionStatus,
    WorkQueue,
)

__all__ = [
    "DEFAULT_DB",
    "HOLDING",
    "MAX_ROW_ID",
    "NO_FILTER",
    "OUTCOME_EVENT",
    "OUTCOME_STATE",
    "SETTLED",
    "Claim",
    "Cursor",
    "Ending",
    "EnrolmentRecord",
    "EnrolmentState",
    "EventRecord",
    "LaunchResult",
    "Move",
    "NewEnrolment",
    "NewStep",
    "Outcome",
    "OutcomeKind",
    "Repository",
    "Signal",
    "SignalKind",
    "StepRow",
    "StepState",
    "Store",
    "TaskFilter",
    "VersionStatus",
    "WorkQueue",
    "batched",
    "check_store",
    "open_store",
]

DEFAULT_DB = "./cadence.db"
_T = TypeVar("_T")


def open_store(url: str | None = None) -> Store:
    """Open the store named by `url` (a path or sqlite:///path); default `CADENCE_DB`.

    Use it as a context manager: `with open_store(url) as store: …`.
    """
    target = url or os.environ.get("CADENCE_DB") or DEFAULT_DB
    if _is_postgres(target):
        from .postgres import PostgresStore

        return PostgresStore(target)
    from .sqlite import SqliteStore

    return SqliteStore(_sqlite_path(target))


def check_store(url: str | None = None) -> list[str]:
    """`cadence store check`: what is damaged in the store (empty: it is whole).

    Opened without the schema check at open, so a damaged store can still be examined;
    a missing file is a usage error, never a new store.
    """
    target = url or os.environ.get("CADENCE_DB") or DEFAULT_DB
    if _is_postgres(target):
        raise UsageError(
            "cadence store check examines a SQLite store file",
            hint="for PostgreSQL use its own checks (pg_amcheck); the schema is checked at open",
        )
    from .sqlite import check_file

    return check_file(_sqlite_path(target))


def _is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def _sqlite_path(target: str) -> Path:
    if target.startswith("sqlite:///"):
        target = target[len("sqlite:///") :]
    elif "://" in target:
        raise UsageError(
            f"unknown state store URL {target!r}",
            hint="give a SQLite file path or a postgresql:// URL",
        )
    return Path(target)


def batched(items: Iterable[_T], size: int = 500) -> Iterator[list[_T]]:
    """Chunks small enough for a bound-parameter limit."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def filtered(
    query: str, args: list[Any], where: TaskFilter, *, mark: str, of_sender: str, due: str
) -> tuple[str, list[Any]]:
    """`query` and `args` with `where`'s cadence, action and sender, soonest due first: the
    task filters of `tasks` and `upcoming_tasks` in a store's SQL (its parameter `mark`,
    its subquery `of_sender` for a sender's cadence versions, its `due` column)."""
    if where.cadence is not None:
        query += f" AND e.cadence_name = {mark}"
        args.append(where.cadence)
    if where.action is not None:
        query += f" AND sr.action = {mark}"
        args.append(str(where.action))
    if where.sender is not None:
        query += f" AND e.cadence_hash IN ({of_sender})"
        args.append(where.sender.lower())
    return query + f" ORDER BY {due}, sr.id", args
