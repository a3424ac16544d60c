"""The contract of the Command Center's sign-in state: users, one-time links, sessions.

Kept apart from `Store` (the runner's state): the web process is its only reader and
`cadence users` its only other writer. Secrets (link tokens, session ids) reach the store
only as SHA-256 hashes, so a copy of the database signs nobody in.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from ..errors import UsageError


class User(NamedTuple):
    id: int
    email: str
    name: str
    admin: bool
    timezone: str


class Session(NamedTuple):
    user: User
    csrf: str
    expires_utc: int


def user_exists(email: str) -> UsageError:
    """What `add_user` raises, in every store, for an address that already has a user."""
    return UsageError(
        f"user {email} already exists", hint=f"`cadence users remove {email}` first to change it"
    )


class UserStore(Protocol):
    """Users, sign-in tokens and sessions. Every method is one transaction."""

    def close(self) -> None: ...

    def add_user(self, email: str, name: str, admin: bool, timezone: str, now: int) -> User:
        """Add a user; UsageError when the address already has one."""

    def users(self) -> list[User]:
        """Every user, by address."""

    def user(self, email: str) -> User | None: ...

    def remove_user(self, email: str) -> bool:
        """Remove a user with its links and sessions; False when there was none."""

    def add_sign_in_token(self, user_id: int, token_hash: str, expires_utc: int) -> None: ...

    def use_sign_in_token(self, token_hash: str, now: int) -> User | None:
        """Spend a link: its user once, before it expires; None for a used, expired or
        unknown one (nothing changes then)."""

    def add_session(
        self, id_hash: str, user_id: int, csrf: str, now: int, expires_utc: int
    ) -> None: ...

    def session(self, id_hash: str, now: int) -> Session | None:
        """The live session with this id, or None (unknown, expired, its user removed)."""

    def remove_session(self, id_hash: str) -> None: ...
