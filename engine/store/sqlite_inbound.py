"""`InboundStore` on the SQLite store: its SQL, on the store's own connection and locks."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from engine.inbound.store import Cursor, Enrolled, Handled, Paused, PlanPause
from engine.store import EndState, SignalKind, SignalResult
from engine.store.sqlite import _EVENT, _ROW_SELECT, SqliteStore, _row, store_error

_EVENT_WITH_SOURCE = (
    "INSERT INTO events (at_utc, kind, email, enrolment_id, step_run_id, detail, source) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)

_ENROLLED = """
SELECT e.id, e.cadence_name, e.cadence_hash, e.email, e.state,
       (SELECT min(s.sent_utc) FROM step_runs s WHERE s.enrolment_id = e.id)
FROM enrolments e
"""


def _enrolled(r: tuple[Any, ...]) -> Enrolled:
    return Enrolled(r[0], r[1], r[2], r[3], r[4], r[5])


class SqliteInboundStore:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self._db = store._db

    def _translate(self, exc: sqlite3.Error) -> Exception:
        return store_error(self.store.path, exc)

    def cursor(self, mailbox: str) -> Cursor | None:
        try:
            row = self._db.execute(
                "SELECT uidvalidity, last_uid, since_utc FROM inbox_cursors WHERE mailbox = ?",
                (mailbox,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        return Cursor(*row) if row else None

    def by_message_id(self, message_ids: Collection[str]) -> dict[str, Enrolled]:
        found: dict[str, Enrolled] = {}
        ids = sorted(set(message_ids))
        try:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT sr.message_id, e.id, e.cadence_name, e.cadence_hash, e.email, "
                    f"e.state, (SELECT min(s.sent_utc) FROM step_runs s "
                    f"WHERE s.enrolment_id = e.id) FROM step_runs sr "
                    f"JOIN enrolments e ON e.id = sr.enrolment_id "
                    f"WHERE sr.message_id IN ({marks})",
                    chunk,
                ).fetchall()
                for r in rows:
                    found[r[0]] = _enrolled(r[1:])
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        return found

    def by_address(self, emails: Collection[str]) -> dict[str, list[Enrolled]]:
        found: dict[str, list[Enrolled]] = {}
        addresses = sorted({e.lower() for e in emails})
        try:
            for start in range(0, len(addresses), 500):
                chunk = addresses[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    _ENROLLED + f" WHERE e.email IN ({marks}) ORDER BY e.id", chunk
                ).fetchall()
                for r in rows:
                    found.setdefault(r[3], []).append(_enrolled(r))
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        return found

    def address_of_token(self, token: str) -> str | None:
        try:
            row = self._db.execute(
                "SELECT email FROM enrolments WHERE unsubscribe_token = ?", (token,)
            ).fetchone()
            if row is None:  # a mail system that lower-cased the plus address
                rows = self._db.execute(
                    "SELECT email FROM enrolments WHERE lower(unsubscribe_token) = lower(?)",
                    (token,),
                ).fetchall()
                row = rows[0] if len({r[0] for r in rows}) == 1 else None
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        return str(row[0]) if row else None

    def handled(self, dedupe_keys: Collection[str]) -> set[str]:
        keys = sorted(set(dedupe_keys))
        seen: set[str] = set()
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                seen.update(
                    r[0]
                    for r in self._db.execute(
                        f"SELECT dedupe_key FROM inbox_messages WHERE dedupe_key IN ({marks})",
                        chunk,
                    )
                )
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        return seen

    def record_inbox(
        self,
        mailbox: str,
        cursor: Cursor,
        messages: Sequence[Handled],
        now: int,
        end: EndState,
        plan_pause: PlanPause,
    ) -> list[Handled]:
        new: list[Handled] = []
        try:
            with self.store._write() as db:
                for m in messages:
                    inserted = db.execute(
                        "INSERT OR IGNORE INTO inbox_messages (dedupe_key, mailbox, uid, kind, "
                        "email, enrolment_id, detail, at_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            m.dedupe_key,
                            mailbox,
                            m.uid,
                            m.kind,
                            m.email,
                            m.pause.enrolment_id if m.pause else None,
                            m.detail,
                            now,
                        ),
                    ).rowcount
                    if not inserted:
                        continue
                    new.append(m)
                    self._act(db, m, now, end, plan_pause)
                db.execute(
                    "INSERT INTO inbox_cursors VALUES (?, ?, ?, ?, ?) ON CONFLICT (mailbox) "
                    "DO UPDATE SET uidvalidity = excluded.uidvalidity, "
                    "last_uid = excluded.last_uid, since_utc = excluded.since_utc, "
                    "updated_utc = excluded.updated_utc",
                    (mailbox, cursor.uidvalidity, cursor.last_uid, cursor.since_utc, now),
                )
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        return new

    def _act(
        self, db: sqlite3.Connection, m: Handled, now: int, end: EndState, plan_pause: PlanPause
    ) -> None:
        if m.signal is not None and m.email is not None:
            self._signal(db, m.signal, m.email, m.cadence_name, now, end, m.source, m.detail)
        elif m.pause is not None:
            self._pause(db, m, now, plan_pause)
        elif m.kind in ("delayed", "auto-reply"):  # logged, not acted on
            db.execute(_EVENT_WITH_SOURCE, (now, m.kind, m.email, None, None, m.detail, m.source))

    def _pause(self, db: sqlite3.Connection, m: Handled, now: int, plan_pause: PlanPause) -> None:
        assert m.pause is not None
        enrolment = m.pause
        state = db.execute(
            "SELECT state FROM enrolments WHERE id = ?", (enrolment.enrolment_id,)
        ).fetchone()
        if state is None or state[0] != "active":
            return
        later = [
            _row(r)
            for r in db.execute(
                _ROW_SELECT + " WHERE sr.enrolment_id = ? AND sr.state = 'planned' "
                "ORDER BY sr.step_index",
                (enrolment.enrolment_id,),
            ).fetchall()
        ]
        (held_until,) = db.execute(
            "SELECT coalesce(max(until_utc), 0) FROM pauses WHERE enrolment_id = ?",
            (enrolment.enrolment_id,),
        ).fetchone()
        plan = plan_pause(m, later)
        if plan.until_utc <= held_until or plan.days <= 0:
            return  # already held at least that long (an auto-reply to each email)
        db.execute(
            "INSERT INTO pauses (enrolment_id, from_utc, until_utc, days, reason, source) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (enrolment.enrolment_id, now, plan.until_utc, plan.days, plan.detail, m.source),
        )
        db.executemany(
            "UPDATE step_runs SET due_utc = ?, planned_utc = ? WHERE id = ?",
            [(mv.due_utc, mv.planned_utc, mv.step_run_id) for mv in plan.moves],
        )
        db.execute(
            _EVENT_WITH_SOURCE,
            (
                now,
                "auto-reply pause",
                enrolment.email,
                enrolment.enrolment_id,
                None,
                plan.detail,
                m.source,
            ),
        )
        db.executemany(
            _EVENT,
            [
                (
                    now,
                    "rescheduled",
                    enrolment.email,
                    enrolment.enrolment_id,
                    mv.step_run_id,
                    "after auto-reply pause",
                )
                for mv in plan.moves
            ],
        )

    def _signal(
        self,
        db: sqlite3.Connection,
        kind: SignalKind,
        email: str,
        cadence_name: str | None,
        now: int,
        end: EndState,
        source: str,
        detail: str,
    ) -> SignalResult:
        result = self.store._signal(db, kind, email.lower(), cadence_name, now, end, log=False)
        if result.new:
            db.execute(
                _EVENT_WITH_SOURCE,
                (now, str(kind), email.lower(), None, None, detail or cadence_name, source),
            )
        return result

    def record_signal(
        self,
        kind: SignalKind,
        email: str,
        cadence_name: str | None,
        now: int,
        end: EndState,
        source: str,
    ) -> SignalResult:
        try:
            with self.store._write() as db:
                return self._signal(db, kind, email, cadence_name, now, end, source, "")
        except sqlite3.Error as exc:
            raise self._translate(exc) from None

    def paused(self, now: int) -> list[Paused]:
        try:
            rows = self._db.execute(
                "SELECT p.enrolment_id, e.cadence_name, e.email, p.from_utc, max(p.until_utc), "
                "p.reason FROM pauses p JOIN enrolments e ON e.id = p.enrolment_id "
                "WHERE e.state = 'active' GROUP BY p.enrolment_id HAVING max(p.until_utc) > ? "
                "ORDER BY 5, 1",
                (now,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        return [Paused(*r) for r in rows]
