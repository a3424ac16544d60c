"""Transports hand a finished message to the world: `outbox:DIR`, `smtp://`, `smtps://`.

`parse_transport` is the one registry: the `--transport` / `CADENCE_TRANSPORT` value picks
the implementation. A transport reports failures as one of three exceptions, because the
runner's guarantees depend on exactly that distinction: known not sent (retry), refused
for good (record the answer), or outcome unknown (never resend automatically).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable
from urllib.parse import urlsplit

from engine.errors import UsageError

DEFAULT_TRANSPORT = "outbox:./outbox"


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipient: str
    message_id: str
    # The recipient's (or sender's) local part is not ASCII: the server must offer
    # SMTPUTF8 (RFC 6531); the builder always writes domains in their ASCII form.
    smtputf8: bool = False


class Staged(NamedTuple):
    """A whole message a transport holds out of sight, ready to be handed over.

    A plain tuple: thousands of them cross from the render worker each run.
    """

    message_id: str
    handle: str  # the transport's own reference (the outbox: the hidden file's path)


class TemporaryFailure(Exception):
    """Known not delivered (4xx, connection error before DATA): retry later."""


class PermanentFailure(Exception):
    """Refused for good. `recipient` is True for a 5xx to RCPT (the address bounced)."""

    def __init__(self, answer: str, *, recipient: bool) -> None:
        super().__init__(answer)
        self.recipient = recipient


class DeliveryUnknown(Exception):
    """Failed during or after DATA: the message may have been delivered."""


class Transport(Protocol):
    def open(self) -> None:
        """Get ready to send (connect, log in); failures mean nothing was sent."""

    def send(self, envelope: Envelope, data: bytes) -> str:
        """Deliver one message; returns the server's answer (or the file written)."""

    def flush(self) -> None:
        """Make what was delivered so far durable (called before recording `sent`)."""

    def close(self) -> None: ...


@runtime_checkable
class Staging(Protocol):
    """A transport that can write a message before it may be handed over (the outbox).

    `stage` may run in another process (the runner's render worker) and before the
    runner commits `sending`: it delivers nothing. `send_staged` is the hand-over, in
    the runner's process, after `sending` is committed and the last signal check;
    `discard` drops a staged message that will not go out.
    """

    def stage(self, envelope: Envelope, data: bytes) -> Staged: ...

    def send_staged(self, staged: Staged) -> str: ...

    def discard(self, staged: Staged) -> None: ...

    def take_durable(self) -> Callable[[], None]:
        """What was handed over since the last call, as a function that makes it durable.

        The function may run on another thread while more is handed over; `flush` is
        `take_durable()()`.
        """
        ...


def parse_transport(spec: str | None = None) -> Transport:
    """Build the transport named by `spec`, else `CADENCE_TRANSPORT`, else the outbox."""
    text = spec or os.environ.get("CADENCE_TRANSPORT") or DEFAULT_TRANSPORT
    if text.startswith("outbox:"):
        from engine.transports.outbox import OutboxTransport

        folder = text[len("outbox:") :]
        if not folder:
            raise UsageError("outbox transport needs a folder, e.g. outbox:./outbox")
        return OutboxTransport(Path(folder))
    parts = urlsplit(text)
    if parts.scheme in ("smtp", "smtps"):
        from engine.transports.smtp import SmtpTransport, settings_from_env

        if not parts.hostname:
            raise UsageError(f"transport {text!r} has no host", hint="smtp://host:587")
        if parts.username is not None or parts.password is not None:
            raise UsageError(
                "the transport URL must not carry credentials",
                hint="give them in CADENCE_SMTP_USER / CADENCE_SMTP_PASSWORD",
            )
        try:
            port = parts.port
        except ValueError:
            raise UsageError(f"transport {text!r} has a bad port") from None
        return SmtpTransport(
            host=parts.hostname,
            port=port or (465 if parts.scheme == "smtps" else 587),
            implicit_tls=parts.scheme == "smtps",
            settings=settings_from_env(),
        )
    raise UsageError(
        f"unknown transport {text!r}",
        hint="use outbox:DIR, smtp://host:port (STARTTLS) or smtps://host:port (TLS)",
    )
