"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 with STARTTLS and AUTH.

It records every message it accepted (as the bytes it received, with the client's address
and the instant the final dot was answered), so tests assert on what a mail server really
got, over which connection and how fast. Addresses in `reject` get a 550 to RCPT (a
bounce), those in `defer` a 451 (a temporary failure); the next `slow_down` MAIL commands
get a 421 (the server sends a session away), and `resets` counts RSET commands.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.helpers.certs import self_signed

USER = "cadence"
PASSWORD = "s3cret-for-tests"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: tuple[str, int] = ("", 0)  # the client's end of the connection
    at: float = 0.0  # time.monotonic() when the message was accepted

    @property
    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Recorder:
    received: list[Received] = field(default_factory=list)
    reject: set[str] = field(default_factory=set)
    defer: set[str] = field(default_factory=set)
    slow_down: int = 0
    resets: int = 0
    mail_peers: list[tuple[str, int]] = field(default_factory=list)  # one per MAIL
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.reject.clear()
            self.defer.clear()
            self.mail_peers.clear()
            self.slow_down = self.resets = 0

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            self.mail_peers.append(tuple(session.peer))
            if self.slow_down > 0:
                self.slow_down -= 1
                return "421 4.7.0 Too many messages, slow down; closing connection"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.resets += 1
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address in self.defer:
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    bytes(envelope.content),
                    tuple(session.peer),
                    time.monotonic(),
                )
            )
        return "250 2.0.0 Ok: queued"

    def message_ids(self) -> list[str]:
        with self.lock:
            return [str(r.message["Message-ID"]) for r in self.received]


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == USER.encode()
        and data.password == PASSWORD.encode()
    )
    # handled=False: the server answers a refusal with 535 itself (else it stays silent).
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SmtpServer:
    host: str
    port: int
    cafile: Path
    recorder: Recorder

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment a client needs: transport, CA to trust, credentials."""
        return {
            "CADENCE_TRANSPORT": self.url,
            "CADENCE_SMTP_CAFILE": str(self.cafile),
            "CADENCE_SMTP_USER": USER,
            "CADENCE_SMTP_PASSWORD": PASSWORD,
        }


def serve(folder: Path, *, smtputf8: bool = False) -> Iterator[SmtpServer]:
    """Run the server for the duration of a fixture (generator); `smtputf8` offers
    SMTPUTF8 (RFC 6531)."""
    cert, key = self_signed(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    recorder = Recorder()
    port = free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_require_tls=True,
        authenticator=_authenticate,
        auth_required=True,
        enable_SMTPUTF8=smtputf8,
    )
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, cert, recorder)
    finally:
        controller.stop()
