"""Transports hand a finished message to the world: `outbox:DIR`, `smtp://`, `smtps://`.

`parse_transport` is the one registry: the `--transport` / `CADENCE_TRANSPORT` value picks
the implementation. A transport reports each message's fate as its answer or one of three
exceptions, because the runner's guarantees depend on exactly that distinction: known not
sent (retry; `TransportDown`: due again at once, and the run stops), refused for good
(record the answer), or outcome unknown (never resend automatically).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol
from urllib.parse import SplitResult, parse_qs, urlsplit

from ..errors import CadenceError, UsageError

DEFAULT_TRANSPORT = "outbox:./outbox"


class Envelope(NamedTuple):
    sender: str
    recipient: str
    message_id: str
    # The recipient's local part is not ASCII: the server must offer SMTPUTF8. The domain
    # is always given in its ASCII (IDNA) form.
    smtputf8: bool = False


class TemporaryFailure(Exception):
    """Known not delivered (4xx, connection error before DATA): retry later."""


class TransportDown(TemporaryFailure):
    """The transport cannot go on (login refused, outbox not writable, …): this message
    and every later one of the call were not handed over. The runner puts them back to
    due at once, records the rest, and stops the run with `error`."""

    def __init__(self, error: CadenceError) -> None:
        super().__init__(str(error))
        self.error = error


class PermanentFailure(Exception):
    """Refused for good. `recipient` is True for a 5xx to RCPT (the address bounced)."""

    def __init__(self, answer: str, *, recipient: bool) -> None:
        super().__init__(answer)
        self.recipient = recipient


class DeliveryUnknown(Exception):
    """Failed during or after DATA: the message may have been delivered."""


class Withheld(TemporaryFailure):
    """Not handed over because `ready` did not allow it: the runner has its outcome."""

    def __init__(self) -> None:
        super().__init__("not handed over: withheld by the runner")


# What became of one message handed over: the server's answer (or the file written), or
# the failure, as an instance.
Result = str | TemporaryFailure | PermanentFailure | DeliveryUnknown

# The runner's part of a hand-over: it commits `sending`, makes its last check, and
# returns the indexes (into the messages given) that may go.
Ready = Callable[[], Collection[int]]


class Transport(Protocol):
    # The most messages handed over at once: the most that can be in doubt after a crash.
    # The runner commits `sending` for at most this many rows before each `send_many`.
    @property
    def in_doubt(self) -> int: ...

    def open(self) -> None:
        """Get ready to send (connect, log in); failures mean nothing was sent."""
        ...

    def send_many(
        self, messages: Sequence[tuple[Envelope, bytes]], ready: Ready | None = None
    ) -> list[Result]:
        """Hand messages over; one result per message, in the same order: the server's
        answer (or the file written), or the exception instance that says what happened.

        `ready` is called exactly once, on the calling thread, before the first byte of
        any message is handed over; it may come after work that hands nothing over (one
        SMTP session: its `MAIL FROM` is on its way, its answer read after), so the
        runner's commit runs while the server answers. Nothing whose index it does not
        return is handed over; the results at those indexes say nothing the caller
        needs (`Withheld`, or a failure from before `ready`). When it raises, nothing is
        handed over and `send_many` raises the same. Without `ready`, every message goes."""
        ...

    def flush(self) -> None:
        """Make what was delivered so far durable (called before recording `sent`)."""
        ...

    def close(self) -> None: ...


_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:(?://)?)?(?P<userinfo>.*)@", re.DOTALL)


def masked(text: str) -> str:
    """`text` as it may be printed: whatever precedes the last `@` (a URL's user and
    password, however badly written) becomes `***`."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme') or ''}***@", text, count=1)


def parse_transport(spec: str | None = None) -> Transport:
    """Build the transport named by `spec`, else `CADENCE_TRANSPORT`, else the outbox."""
    text = spec or os.environ.get("CADENCE_TRANSPORT") or DEFAULT_TRANSPORT
    if text.startswith("outbox:"):
        from .outbox import OutboxTransport

        folder = text[len("outbox:") :]
        if not folder:
            raise UsageError("outbox transport needs a folder, e.g. outbox:./outbox")
        return OutboxTransport(Path(folder))
    shown = masked(text)
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed [ in the host
        raise UsageError(f"transport {shown!r} is not a URL", hint="smtp://host:587") from None
    if parts.scheme in ("smtp", "smtps"):
        return _smtp(parts, shown)
    raise UsageError(
        f"unknown transport {shown!r}",
        hint="use outbox:DIR, smtp://host:port (STARTTLS) or smtps://host:port (TLS)",
    )


def _smtp(parts: SplitResult, shown: str) -> Transport:
    from .smtp import SmtpTransport, parse_options, settings_from_env

    if "@" in parts.netloc:
        raise UsageError(
            f"the transport URL {shown!r} must not carry credentials",
            hint="give them in CADENCE_SMTP_USER / CADENCE_SMTP_PASSWORD",
        )
    if not parts.hostname:
        raise UsageError(f"transport {shown!r} has no host", hint="smtp://host:587")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(
            f"transport {shown!r} has a bad port", hint="a number from 1 to 65535"
        ) from None
    if port == 0:
        raise UsageError(f"transport {shown!r} has a bad port", hint="a number from 1 to 65535")
    if parts.path not in ("", "/") or parts.fragment:
        raise UsageError(
            f"transport {shown!r}: an SMTP URL has no path",
            hint="smtp://host:port?connections=N&per_connection=M&rate=R/s",
        )
    options = parse_options(parse_qs(parts.query, keep_blank_values=True), repr(shown))
    return SmtpTransport(
        host=parts.hostname,
        port=port or (465 if parts.scheme == "smtps" else 587),
        implicit_tls=parts.scheme == "smtps",
        settings=settings_from_env(),
        options=options,
    )
