"""Unsubscribe links of an enrolment, the checks of their settings, and acting on a token.

Every message carries `List-Unsubscribe` with a `mailto:` to the sender's own address,
plus-addressed and with a subject that both hold the enrolment's token
(`dana+unsubscribe-TOKEN@acme.example?subject=unsubscribe%20TOKEN`), so the inbound poller
can match it whichever of the two the receiving mail system keeps. When
`CADENCE_UNSUBSCRIBE_URL` (the token appended, or put in place of `{token}`) or else an
https `CADENCE_BASE_URL` (`…/u/TOKEN`) is set, a one-click URL (RFC 8058) comes first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote, urlsplit

from .errors import NotFound, UsageError
from .store import Repository, Signal, SignalKind
from .users import base_url

if TYPE_CHECKING:
    from .signals import SignalResult

BASE_URL = "CADENCE_BASE_URL"
UNSUBSCRIBE_URL = "CADENCE_UNSUBSCRIBE_URL"
PLUS_TAG = "unsubscribe-"


class Links(NamedTuple):
    """An enrolment's unsubscribe links: the one-click https URL (or None), the mailto."""

    https: str | None
    mailto: str

    @property
    def primary(self) -> str:
        """The link a template's `{{ unsubscribe_url }}` shows."""
        return self.https or self.mailto


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    email: str
    result: SignalResult
    source: str

    @property
    def new(self) -> bool:
        """False when the address was already unsubscribed."""
        return self.result.new

    @property
    def ended(self) -> tuple[int, ...]:
        """The enrolment ids it ended."""
        return self.result.ended


# What `quote` leaves as it is: the tokens we issue (URL-safe base64) always are.
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~/-]*")


def mailto(sender: str, token: str) -> str:
    local, _, domain = sender.partition("@")
    # `quote` works character by character: the space is `%20`, the token as quoted.
    quoted = token if _UNQUOTED.fullmatch(token) else quote(token)
    return f"mailto:{local}+{PLUS_TAG}{token}@{domain}?subject=unsubscribe%20{quoted}"


@dataclass(frozen=True, slots=True)
class LinkForm:
    """The one-click URL form the environment asks for, read once (a run reads it as it
    starts) and then used for every token."""

    own: str  # CADENCE_UNSUBSCRIBE_URL ("" when unset)
    base: str  # an https CADENCE_BASE_URL without its trailing `/` ("" when none)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LinkForm:
        env = os.environ if env is None else env
        base = env.get(BASE_URL, "").strip()
        return cls(
            own=env.get(UNSUBSCRIBE_URL, "").strip(),
            base=base.rstrip("/") if base.startswith("https://") else "",
        )

    def one_click(self, token: str) -> str | None:
        """The https URL for `token`, or None when neither variable is set."""
        if self.own:
            return self.own.replace("{token}", token) if "{token}" in self.own else self.own + token
        return self.base + "/u/" + token if self.base else None

    def links(self, sender: str, token: str) -> Links:
        return Links(https=self.one_click(token), mailto=mailto(sender, token))


def links(sender: str, token: str, env: Mapping[str, str] | None = None) -> Links:
    return LinkForm.from_env(env).links(sender, token)


def check_environment(env: Mapping[str, str] | None = None) -> None:
    """UsageError for an http:// or malformed CADENCE_UNSUBSCRIBE_URL / CADENCE_BASE_URL.

    Checked when a run starts, so a typo never goes out in thousands of messages.
    """
    env = os.environ if env is None else env
    for name in (UNSUBSCRIBE_URL, BASE_URL):
        value = env.get(name, "").strip()
        if not value:
            continue
        problem = _url_problem(value.replace("{token}", "TOKEN"))
        if not problem and name == BASE_URL:
            base_url(value)  # the one rule for its shape: no query or fragment to append to
        if problem:
            raise UsageError(
                f"{name}={value!r} {problem}",
                hint="one-click unsubscribe (RFC 8058) needs an https URL, e.g. "
                + (
                    "https://example.com/unsubscribe?t={token}"
                    if name == UNSUBSCRIBE_URL
                    else "https://cadence.example.com"
                )
                + f"; or unset {name}",
            )


def _url_problem(value: str) -> str:
    if any(c.isspace() or ord(c) < 32 for c in value):
        return "holds spaces or control characters"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme == "http":
        return "is http://, not https://"
    if parts.scheme != "https":
        return "is not an https:// URL"
    if not parts.hostname or port == 0:
        return "has no host"
    return ""


def address_of_token(store: Repository, token: str) -> str | None:
    """The address whose enrolment holds `token`; None for a token no enrolment has.

    A mail system may lower-case a plus address: a token found only without its case
    counts when every enrolment it matches is the same address's.
    """
    token = token.strip()
    found = store.enrolments_by_token(token) if token else []
    addresses = {e.email for e in found}
    return addresses.pop() if len(addresses) == 1 else None


def unsubscribe_by_token(
    store: Repository, token: str, *, source: str, now: datetime
) -> Unsubscribed:
    """Unsubscribe the address holding `token` from every cadence (the signal path of
    `cadence event unsubscribe`, logged with `source`); NotFound when unknown."""
    from .run.pinned import Versions
    from .signals import apply_signal

    email = address_of_token(store, token)
    if email is None:
        raise NotFound(
            f"no enrolment has the unsubscribe token {token!r}",
            hint="the token is the last part of the unsubscribe link in a sent message",
        )
    signal = Signal(SignalKind.UNSUBSCRIBE, email, None, int(now.timestamp()), source)
    return Unsubscribed(email, apply_signal(store, Versions(store), signal), source)
