"""Reads the Command Center needs beyond `Store`: a contact's enrolments, the latest
events, an enrolment by its unsubscribe token. SQL next to the store that runs it.

Runs on the connection of the `SqliteStore` it is given, so it sees exactly what that
store sees and costs no second connection per web thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.store import StepRow
from engine.store.sqlite import _ROW_SELECT, SqliteStore, _row, store_error


@dataclass(frozen=True, slots=True)
class EnrolmentRow:
    id: int
    cadence_name: str
    cadence_hash: str
    email: str
    state: str
    launched_utc: int
    ended_utc: int | None


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    at_utc: int
    kind: str
    email: str
    step_run_id: int | None
    detail: str
    cadence_name: str = ""  # of the enrolment the event is about, when it names one
    step_id: str = ""


_ENROLMENT = (
    "SELECT id, cadence_name, cadence_hash, email, state, launched_utc, ended_utc FROM enrolments"
)
# Cadence versions whose sender is the given address (a rep's own cadences).
_OF_SENDER = (
    "SELECT hash FROM cadence_versions WHERE lower(json_extract(data, '$.sender.email')) = ?"
)

_EVENT_SELECT = """
SELECT ev.id, ev.at_utc, ev.kind, coalesce(ev.email, ''), ev.step_run_id, coalesce(ev.detail, ''),
       coalesce(e.cadence_name, ''), coalesce(sr.step_id, '')
FROM events ev
LEFT JOIN step_runs sr ON sr.id = ev.step_run_id
LEFT JOIN enrolments e ON e.id = coalesce(ev.enrolment_id, sr.enrolment_id)
"""


class SqliteReads:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._db = store._db

    def _all(self, query: str, args: tuple[Any, ...]) -> list[Any]:
        import sqlite3

        try:
            return self._db.execute(query, args).fetchall()
        except sqlite3.Error as exc:
            raise store_error(self._store.path, exc) from None

    def coming_tasks(
        self, until_utc: int, actions: tuple[str, ...], sender: str | None = None
    ) -> list[StepRow]:
        """Task steps not open yet, of active enrolments, due by `until_utc`, soonest first
        (a rep's own scheduled emails are not tasks any more and are left out)."""
        marks = ",".join("?" * len(actions))
        # Named: without statistics SQLite prefers step_runs_due and walks every due email.
        query = _ROW_SELECT.replace(
            "FROM step_runs sr", "FROM step_runs sr INDEXED BY step_runs_planned_tasks"
        ) + (
            " WHERE sr.state = 'planned' AND sr.action != 'send email' AND sr.by_hand = 0 "
            f"AND sr.action IN ({marks}) AND e.state = 'active' AND sr.due_utc <= ?"
        )
        args: tuple[Any, ...] = (*actions, until_utc)
        if sender is not None:
            query += f" AND e.cadence_hash IN ({_OF_SENDER})"
            args += (sender.lower(),)
        return [_row(r) for r in self._all(query + " ORDER BY sr.due_utc, sr.id", args)]

    def enrolment_by_token(self, token: str) -> EnrolmentRow | None:
        rows = self._all(_ENROLMENT + " WHERE unsubscribe_token = ?", (token,))
        return EnrolmentRow(*rows[0]) if rows else None

    def enrolments_of(self, email: str, sender: str | None = None) -> list[EnrolmentRow]:
        """The contact's enrolments, oldest first; with `sender`, only that sender's."""
        query = _ENROLMENT + " WHERE email = ?"
        args: tuple[str, ...] = (email.lower(),)
        if sender is not None:
            query += f" AND cadence_hash IN ({_OF_SENDER})"
            args += (sender.lower(),)
        return [EnrolmentRow(*r) for r in self._all(query + " ORDER BY id", args)]

    def latest_events(
        self, limit: int, kinds: tuple[str, ...], sender: str | None = None
    ) -> list[EventRow]:
        """The newest events of these kinds first; with `sender`, only those about
        contacts enrolled in that sender's cadences."""
        marks = ",".join("?" * len(kinds))
        query = _EVENT_SELECT + f" WHERE ev.kind IN ({marks})"
        args: tuple[Any, ...] = kinds
        if sender is not None:
            # About a contact of theirs, and not about an enrolment in someone else's cadence.
            query += (
                " AND ev.email IN (SELECT email FROM enrolments "
                f"WHERE cadence_hash IN ({_OF_SENDER})) "
                f"AND (e.cadence_hash IS NULL OR e.cadence_hash IN ({_OF_SENDER}))"
            )
            args += (sender.lower(), sender.lower())
        query += " ORDER BY ev.at_utc DESC, ev.id DESC LIMIT ?"
        return [EventRow(*r) for r in self._all(query, (*args, limit))]

    def contact_events(self, email: str) -> list[EventRow]:
        """Every event about one address, oldest first."""
        query = _EVENT_SELECT + " WHERE ev.email = ? ORDER BY ev.at_utc, ev.id"
        return [EventRow(*r) for r in self._all(query, (email.lower(),))]
