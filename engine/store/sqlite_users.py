"""`UserStore` on the SQLite state file: the SQL of users, sign-in links and sessions.

It runs on a `SqliteStore`'s connection and write transactions (WAL, `BEGIN IMMEDIATE`),
so it shares that store's settings, its checks that the files are still writable and its
translation of SQLite errors (`store_error`). The store has no public connection or
transaction helper, so this one module reaches three of its private names: `_db` (the
connection), `_write` (a `BEGIN IMMEDIATE` transaction) and `_check_writable`.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from .sqlite import SqliteStore, store_error
from .users import Session, User, user_exists

_F = TypeVar("_F", bound=Callable[..., Any])


def _translated(method: _F) -> _F:
    """SQLite errors as the store reports them (one translation: `store_error`)."""

    @functools.wraps(method)
    def wrapper(self: SqliteUsers, *args: Any, **kwargs: Any) -> Any:
        self._store._check_writable()
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None

    return wrapper  # type: ignore[return-value]


_USER = "SELECT id, email, name, admin, timezone FROM users"


def _user(r: tuple[Any, ...]) -> User:
    return User(id=r[0], email=r[1], name=r[2], admin=bool(r[3]), timezone=r[4])


class SqliteUsers:
    """`UserStore` on the connection of a `SqliteStore` (whose migrations made the tables).

    Closing it closes that store: `open_users` hands it a store of its own; the web
    process shares one per thread with the rest of the page's reads.
    """

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.path = store.path
        self._db = store._db

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> SqliteUsers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._store._write()

    @_translated
    def add_user(self, email: str, name: str, admin: bool, timezone: str, now: int) -> User:
        with self._write() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO users (email, name, admin, timezone, created_utc) "
                "VALUES (?, ?, ?, ?, ?)",
                (email, name, int(admin), timezone, now),
            )
            if cur.rowcount == 0:
                raise user_exists(email)
            return User(int(cur.lastrowid or 0), email, name, admin, timezone)

    @_translated
    def users(self) -> list[User]:
        return [_user(r) for r in self._db.execute(_USER + " ORDER BY email").fetchall()]

    @_translated
    def user(self, email: str) -> User | None:
        found = self._db.execute(_USER + " WHERE email = ?", (email,)).fetchone()
        return _user(found) if found else None

    @_translated
    def remove_user(self, email: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM users WHERE email = ?", (email,)).rowcount == 1

    @_translated
    def add_sign_in_token(self, user_id: int, token_hash: str, expires_utc: int) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO sign_in_tokens (token_hash, user_id, expires_utc) VALUES (?, ?, ?)",
                (token_hash, user_id, expires_utc),
            )

    @_translated
    def use_sign_in_token(self, token_hash: str, now: int) -> User | None:
        with self._write() as db:
            # One UPDATE both checks and spends the link: two tabs opening it at once
            # cannot both sign in.
            spent = db.execute(
                "UPDATE sign_in_tokens SET used_utc = ? "
                "WHERE token_hash = ? AND used_utc IS NULL AND expires_utc > ? "
                "RETURNING user_id",
                (now, token_hash, now),
            ).fetchone()
            if spent is None:
                return None
            found = db.execute(_USER + " WHERE id = ?", (spent[0],)).fetchone()
            return _user(found) if found else None

    @_translated
    def add_session(
        self, id_hash: str, user_id: int, csrf: str, now: int, expires_utc: int
    ) -> None:
        with self._write() as db:
            db.execute("DELETE FROM sessions WHERE expires_utc <= ?", (now,))
            db.execute(
                "INSERT INTO sessions (id_hash, user_id, csrf, created_utc, expires_utc) "
                "VALUES (?, ?, ?, ?, ?)",
                (id_hash, user_id, csrf, now, expires_utc),
            )

    @_translated
    def session(self, id_hash: str, now: int) -> Session | None:
        found = self._db.execute(
            "SELECT u.id, u.email, u.name, u.admin, u.timezone, s.csrf, s.expires_utc "
            "FROM sessions s JOIN users u ON u.id = s.user_id "
            "WHERE s.id_hash = ? AND s.expires_utc > ?",
            (id_hash, now),
        ).fetchone()
        if found is None:
            return None
        return Session(user=_user(found[:5]), csrf=found[5], expires_utc=found[6])

    @_translated
    def remove_session(self, id_hash: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))
