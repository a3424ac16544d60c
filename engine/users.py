"""Who may sign in to the Command Center (SPEC §9): users, one-time links, sessions.

A sign-in link carries a random token valid for 15 minutes and spent on first use; using
it opens a session of 12 hours. Only hashes of both secrets are stored.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from datetime import datetime
from urllib.parse import urlsplit

from .errors import NotFound, UsageError
from .signals import check_address
from .store import Store, open_store
from .store.users import Session, User, UserStore
from .zones import zone_problem

SIGN_IN_SECONDS = 15 * 60
SESSION_SECONDS = 12 * 3600
DEFAULT_BASE_URL = "http://127.0.0.1:8080"


def open_users(url: str | None = None) -> UserStore:
    """The users of the state store named by `url` (default `CADENCE_DB`)."""
    store = open_store(url)
    try:
        return users_on(store)
    except BaseException:
        store.close()
        raise


def users_on(store: Store) -> UserStore:
    """The users kept in `store`, on its connection (closing them closes the store)."""
    from .store.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        from .store.sqlite_users import SqliteUsers

        return SqliteUsers(store)
    from .store.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        from .store.postgres.users import PostgresUsers

        return PostgresUsers(store)
    raise UsageError(  # pragma: no cover - every store kind is handled above
        f"users cannot live in a {type(store).__name__}",
        hint="point CADENCE_DB at a SQLite file or a postgresql:// URL",
    )


def base_url(value: str | None = None) -> str:
    """`CADENCE_BASE_URL` (default http://127.0.0.1:8080) without a trailing slash.

    UsageError for anything but an http(s) URL with a host and no query or fragment.
    """
    text = (value if value is not None else os.environ.get("CADENCE_BASE_URL", "")).strip()
    if not text:
        return DEFAULT_BASE_URL
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        host = parts.netloc.rpartition("@")[2]
        raise UsageError(
            f"CADENCE_BASE_URL={text!r} is not a base URL",
            hint="an IPv6 address goes in brackets, e.g. http://[::1]:8080"
            if host.count(":") > 1 and "[" not in host
            else "give the address reps open, e.g. https://cadence.example.com (no query)",
        )
    return text.rstrip("/")


def normal_email(text: str, field: str = "EMAIL") -> str:
    """The lower-cased address; UsageError naming `field` when it is not one (the check
    contact lists get)."""
    return check_address(text, option=field)


def check_timezone(name: str, field: str = "--timezone") -> str:
    """`name` when it is an accepted zone (engine.zones: an IANA place, not an
    abbreviation or a fixed offset); UsageError naming `field` otherwise."""
    problem = zone_problem(name)
    if problem is not None:
        raise UsageError(f"{field} {problem}", hint="e.g. Europe/Amsterdam, UTC")
    return name


def hashed(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def add_user(
    users: UserStore, email: str, *, name: str, admin: bool, timezone: str, now: datetime
) -> User:
    return users.add_user(
        normal_email(email), name.strip(), admin, check_timezone(timezone), int(now.timestamp())
    )


def find_user(users: UserStore, email: str) -> User:
    address = normal_email(email)
    found = users.user(address)
    if found is None:
        raise NotFound(f"no user {address}", hint=f"add one with `cadence users add {address}`")
    return found


def remove_user(users: UserStore, email: str) -> User:
    found = find_user(users, email)
    users.remove_user(found.email)
    return found


def sign_in_link(users: UserStore, email: str, *, base: str, now: datetime) -> str:
    """A new one-time sign-in URL for the user, valid SIGN_IN_SECONDS from `now`."""
    found = find_user(users, email)
    token = secrets.token_urlsafe(32)
    users.add_sign_in_token(found.id, hashed(token), int(now.timestamp()) + SIGN_IN_SECONDS)
    return f"{base}/signin/{token}"


def sign_in(users: UserStore, token: str, now: datetime) -> tuple[str, Session] | None:
    """Spend a sign-in link: a new session (its id, for the cookie), or None when the link
    is used, expired or unknown."""
    at = int(now.timestamp())
    user = users.use_sign_in_token(hashed(token), at)
    if user is None:
        return None
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    users.add_session(hashed(session_id), user.id, csrf, at, at + SESSION_SECONDS)
    return session_id, Session(user=user, csrf=csrf, expires_utc=at + SESSION_SECONDS)


def session_of(users: UserStore, session_id: str, now: datetime) -> Session | None:
    return users.session(hashed(session_id), int(now.timestamp()))


def sign_out(users: UserStore, session_id: str) -> None:
    users.remove_session(hashed(session_id))
