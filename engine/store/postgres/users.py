"""`UserStore` on the PostgreSQL state store: the SQL of users, sign-in links and sessions.

It runs on a `PostgresStore`'s pool and its transaction helper (`_tx`, which also turns a
lost connection into a clear error), the one private name of the store it reaches.
Instants are `timestamptz` (the contract's integer seconds are converted at the edge).
"""

from __future__ import annotations

from typing import Any

from ..users import Session, User, user_exists
from . import PostgresStore

_USER = "SELECT id, email, name, admin, timezone FROM users"


def _user(r: tuple[Any, ...]) -> User:
    return User(id=int(r[0]), email=r[1], name=r[2], admin=bool(r[3]), timezone=r[4])


class PostgresUsers:
    """`UserStore` on the pool of a `PostgresStore` (whose migration 3 made the tables).

    Closing it closes that store, as `open_users` hands it a store of its own.
    """

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self.url = store.url

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> PostgresUsers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_user(self, email: str, name: str, admin: bool, timezone: str, now: int) -> User:
        with self._store._tx() as conn:
            found = conn.execute(
                "INSERT INTO users (email, name, admin, timezone, created_at) "
                "VALUES (%s, %s, %s, %s, to_timestamp(%s)) "
                "ON CONFLICT (email) DO NOTHING RETURNING id",
                (email, name, admin, timezone, now),
            ).fetchone()
        if found is None:
            raise user_exists(email)
        return User(int(found[0]), email, name, admin, timezone)

    def users(self) -> list[User]:
        with self._store._tx() as conn:
            return [_user(r) for r in conn.execute(_USER + " ORDER BY email").fetchall()]

    def user(self, email: str) -> User | None:
        with self._store._tx() as conn:
            found = conn.execute(_USER + " WHERE email = %s", (email,)).fetchone()
        return _user(found) if found else None

    def remove_user(self, email: str) -> bool:
        with self._store._tx() as conn:
            return conn.execute("DELETE FROM users WHERE email = %s", (email,)).rowcount == 1

    def add_sign_in_token(self, user_id: int, token_hash: str, expires_utc: int) -> None:
        with self._store._tx() as conn:
            conn.execute(
                "INSERT INTO sign_in_tokens (token_hash, user_id, expires_at) "
                "VALUES (%s, %s, to_timestamp(%s))",
                (token_hash, user_id, expires_utc),
            )

    def use_sign_in_token(self, token_hash: str, now: int) -> User | None:
        with self._store._tx() as conn:
            # One UPDATE both checks and spends the link (its row lock orders two tabs
            # opening it at once): only one signs in.
            found = conn.execute(
                "WITH spent AS (UPDATE sign_in_tokens SET used_at = to_timestamp(%(now)s) "
                "WHERE token_hash = %(hash)s AND used_at IS NULL "
                "AND expires_at > to_timestamp(%(now)s) RETURNING user_id) "
                "SELECT u.id, u.email, u.name, u.admin, u.timezone "
                "FROM spent JOIN users u ON u.id = spent.user_id",
                {"now": now, "hash": token_hash},
            ).fetchone()
        return _user(found) if found else None

    def add_session(
        self, id_hash: str, user_id: int, csrf: str, now: int, expires_utc: int
    ) -> None:
        with self._store._tx() as conn:
            conn.execute("DELETE FROM sessions WHERE expires_at <= to_timestamp(%s)", (now,))
            conn.execute(
                "INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at) "
                "VALUES (%s, %s, %s, to_timestamp(%s), to_timestamp(%s))",
                (id_hash, user_id, csrf, now, expires_utc),
            )

    def session(self, id_hash: str, now: int) -> Session | None:
        with self._store._tx() as conn:
            found = conn.execute(
                "SELECT u.id, u.email, u.name, u.admin, u.timezone, s.csrf, "
                "extract(epoch FROM s.expires_at)::bigint "
                "FROM sessions s JOIN users u ON u.id = s.user_id "
                "WHERE s.id_hash = %s AND s.expires_at > to_timestamp(%s)",
                (id_hash, now),
            ).fetchone()
        if found is None:
            return None
        return Session(user=_user(found[:5]), csrf=found[5], expires_utc=int(found[6]))

    def remove_session(self, id_hash: str) -> None:
        with self._store._tx() as conn:
            conn.execute("DELETE FROM sessions WHERE id_hash = %s", (id_hash,))
