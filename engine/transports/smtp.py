"""`smtp://host:port` (STARTTLS) and `smtps://host:port` (implicit TLS), with smtplib.

The conversation is driven phase by phase (EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA) so
every failure is classified by where it happened: anything before the end of DATA is known
not delivered (retry, or a bounce for 5xx to RCPT); a broken connection after the message
body started is an unknown outcome, never retried automatically.

Throughput. Sessions are kept open (a new connection after `per_connection` messages)
and the socket has TCP_NODELAY: with the `during-data` fault point armed the body goes out
in two writes, and with Nagle's algorithm the second one waited for the server's delayed
ACK of the first, ~40 ms per message on Linux; otherwise it is one write. Between
messages, `RSET` is sent when the last transaction was cut short (a refusal before DATA);
after the server's answer to the final dot the transaction is over and its state cleared
(RFC 5321, 3.3), so an `RSET` there would be one more round trip per message (a quarter
of the conversation) for nothing. A connection found closed before DATA (an idle timeout)
is opened again and the message tried once more on it: nothing of it had been handed
over. With one session, `MAIL FROM` is sent first and the runner's `sending` commit (an
fsync) runs while the server answers it: nothing is handed over before DATA, and DATA
waits for the commit (one session went from 490 to 589 emails/s, 0.48 to 0.60 of plain
smtplib; see the README). Addresses that need no quoting are not parsed again for each
command. `connections` sessions send in parallel, each on its own thread; a shared
`RateLimit` spaces the messages of all of them (it waits after MAIL's answer, so the
server sees the messages spaced); a session told to slow down (421, or a 4xx before the
recipient) backs off alone and tries the same message again, which is safe because
nothing of it was handed over yet.

Environment: CADENCE_SMTP_USER / CADENCE_SMTP_PASSWORD (AUTH, never from a file),
CADENCE_SMTP_CAFILE (trust this CA, e.g. a test server's), CADENCE_SMTP_INSECURE=1 (skip
certificate checks; tests only), CADENCE_SMTP_TIMEOUT (seconds, default 30).
"""

from __future__ import annotations

import functools
import os
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import CadenceError, UsageError
from ..faults import armed, fault
from . import (
    DeliveryUnknown,
    Envelope,
    PermanentFailure,
    Ready,
    Result,
    TemporaryFailure,
    TransportDown,
    Withheld,
)

# Answers that mean "log in first" or "your login is refused": no message can go until
# the settings change, so the run stops instead of failing every email of the batch.
_AUTH_CODES = (530, 535)

_LEADING_DOT = re.compile(rb"(?m)^\.")

# An address smtplib's `quoteaddr` would give back unchanged inside <>: it is not parsed
# again for every command (a tenth of the client's time per message).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


def _path(address: str) -> str:
    """The `<address>` of a MAIL or RCPT command."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


# Defaults that keep inside the published limits of Microsoft 365 (three concurrent SMTP
# AUTH connections per mailbox) and Gmail; see the README's "SMTP" section.
DEFAULT_CONNECTIONS = 3
DEFAULT_PER_CONNECTION = 100
MAX_CONNECTIONS = 64

# A session told to slow down waits this long, doubling each time, then tries again;
# after SLOW_DOWN_TRIES refusals in a row the message is handed back as a temporary
# failure (the runner retries it after its own backoff).
SLOW_DOWN_FIRST = 0.5
SLOW_DOWN_MAX = 30.0
SLOW_DOWN_TRIES = 4


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    user: str | None = None
    password: str | None = None
    cafile: str | None = None
    insecure: bool = False
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class SmtpOptions:
    """The transport URL's `?connections=N&per_connection=M&rate=R/s`."""

    connections: int = DEFAULT_CONNECTIONS
    per_connection: int = DEFAULT_PER_CONNECTION
    rate: float | None = None  # messages per second across every session; None: no limit
    slow_down_first: float = SLOW_DOWN_FIRST  # seconds; tests shorten it


def settings_from_env() -> SmtpSettings:
    user = os.environ.get("CADENCE_SMTP_USER") or None
    password = os.environ.get("CADENCE_SMTP_PASSWORD") or None
    if user and password is None:
        raise UsageError("CADENCE_SMTP_USER is set but CADENCE_SMTP_PASSWORD is not")
    cafile = os.environ.get("CADENCE_SMTP_CAFILE") or None
    if cafile is not None:
        # Checked now, not at connect time: a wrong setting would otherwise look like a
        # server that is down, and the emails would be retried until they fail.
        try:
            ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(
                f"CADENCE_SMTP_CAFILE={cafile}: cannot load it as a CA certificate ({exc})",
                hint="give the path of a PEM file holding the CA certificate, or unset it",
            ) from None
    return SmtpSettings(
        user=user,
        password=password,
        cafile=cafile,
        insecure=os.environ.get("CADENCE_SMTP_INSECURE") == "1",
        timeout=_timeout(os.environ.get("CADENCE_SMTP_TIMEOUT", "30")),
    )


def _timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < 1e6:  # also refuses nan and inf
        raise UsageError(
            f"CADENCE_SMTP_TIMEOUT={text!r} is not a number of seconds",
            hint="give a positive number, e.g. CADENCE_SMTP_TIMEOUT=30, or unset it",
        )
    return seconds


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_OPTION_HINT = "e.g. smtp://host:587?connections=3&per_connection=100&rate=10/s"


def parse_options(query: dict[str, list[str]], shown: str) -> SmtpOptions:
    """The URL's options, each checked; a bad one is a usage error naming it.

    `query` is `urllib.parse.parse_qs(..., keep_blank_values=True)`; `shown` is the URL
    as it may be printed (credentials masked).
    """
    known = ("connections", "per_connection", "rate")
    for name in query:
        if name not in known:
            raise UsageError(
                f"transport {shown}: unknown option {name!r}",
                hint=f"the options are {', '.join(known)}: {_OPTION_HINT}",
            )
    values: dict[str, str] = {}
    for name, given in query.items():
        if len(given) > 1:
            raise UsageError(f"transport {shown}: option {name!r} is given twice")
        values[name] = given[0]

    def count(name: str, default: int, top: int) -> int:
        text = values.get(name)
        if text is None:
            return default
        if not text.strip().isdigit() or not 1 <= int(text) <= top:
            raise UsageError(
                f"transport {shown}: {name}={text!r} is not a whole number from 1 to {top}",
                hint=_OPTION_HINT,
            )
        return int(text)

    rate: float | None = None
    if "rate" in values:
        text = values["rate"]
        match = _RATE.match(text)
        per_second = float(match.group(1)) / _PER.get(match.group(2), 3600.0) if match else 0.0
        if not 0 < per_second <= 1e6:
            raise UsageError(
                f"transport {shown}: rate={text!r} is not a rate of messages",
                hint="give messages per second, minute or hour, e.g. rate=10/s, rate=30/min, "
                "rate=500/h",
            )
        rate = per_second
    return SmtpOptions(
        connections=count("connections", DEFAULT_CONNECTIONS, MAX_CONNECTIONS),
        per_connection=count("per_connection", DEFAULT_PER_CONNECTION, 1_000_000),
        rate=rate,
    )


class RateLimit:
    """Messages spaced 1/rate seconds apart, whichever session sends them."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


def _answer(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {message}".strip()


# smtplib's own order of preference.
_MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")


def _login(conn: smtplib.SMTP, host: str, user: str, password: str) -> None:
    """AUTH with the first mechanism both sides know; the next only if one is refused as
    unsupported (504, 502). `SMTP.login` goes on to the next mechanism after a 535 too:
    the same wrong password once more, and some servers then stall instead of answering.
    """
    if not conn.has_extn("auth"):
        raise UsageError(
            f"{host} does not offer SMTP AUTH, but CADENCE_SMTP_USER is set",
            hint="unset CADENCE_SMTP_USER / CADENCE_SMTP_PASSWORD, or use the submission port",
        )
    offered = conn.esmtp_features["auth"].upper().split()
    mechanisms = [m for m in _MECHANISMS if m in offered]
    if not mechanisms:
        raise UsageError(f"no SMTP AUTH mechanism in common (the server offers {offered})")
    conn.user, conn.password = user, password
    for mechanism in mechanisms:
        method = getattr(conn, "auth_" + mechanism.lower().replace("-", "_"))
        try:
            conn.auth(mechanism, method)
            return
        except smtplib.SMTPAuthenticationError as exc:
            if exc.smtp_code not in (502, 504) or mechanism == mechanisms[-1]:
                raise


def _auth_refused(code: int, text: bytes | str, user: str | None) -> TransportDown:
    answer = _answer(code, text)
    if user is None:
        return TransportDown(
            UsageError(
                f"the SMTP server requires authentication ({answer})",
                hint="set CADENCE_SMTP_USER and CADENCE_SMTP_PASSWORD; nothing was sent and "
                "these emails are due again",
            )
        )
    return TransportDown(
        UsageError(
            f"SMTP login refused: {answer}",
            hint="check CADENCE_SMTP_USER / CADENCE_SMTP_PASSWORD; nothing was sent and these "
            "emails are due again",
        )
    )


class SlowDown(TemporaryFailure):
    """The server asked this session to slow down (421, or a 4xx before the recipient)."""


class _Stale(TemporaryFailure):
    """A kept-open connection was found closed before DATA: open a new one, try again."""


class _Session:
    """One SMTP connection, used by one thread at a time; reconnects when it must."""

    def __init__(self, transport: SmtpTransport) -> None:
        self.transport = transport
        self.conn: smtplib.SMTP | None = None
        self.sent_here = 0  # transactions on the current connection
        self.dirty = False  # a transaction was begun and not ended (needs RSET)
        self.slow_downs = 0  # times this session backed off (read by tests and the bench)
        self.connections = 0  # connections opened

    def open(self) -> None:
        """Connect, secure and authenticate; failures here are known-not-sent."""
        if self.conn is not None:
            return
        t = self.transport
        timeout = t.settings.timeout
        conn: smtplib.SMTP
        try:
            if t.implicit_tls:
                conn = smtplib.SMTP_SSL(t.host, t.port, timeout=timeout, context=t.context())
            else:
                conn = smtplib.SMTP(t.host, t.port, timeout=timeout)
        except smtplib.SMTPConnectError as exc:
            raise SlowDown(f"{t.host}:{t.port} refused the session: {exc}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(f"cannot connect to {t.host}:{t.port}: {exc}") from None
        try:
            _no_delay(conn)
            code, text = conn.ehlo()
            if 400 <= code < 500:
                raise SlowDown(f"EHLO answered {_answer(code, text)}")
            if not t.implicit_tls:
                if not conn.has_extn("starttls"):
                    raise TemporaryFailure(
                        f"{t.host}:{t.port} does not offer STARTTLS; refusing to send in clear text"
                    )
                conn.starttls(context=t.context())
                _no_delay(conn)
                conn.ehlo()
            if t.settings.user:
                assert t.settings.password is not None
                _login(conn, t.host, t.settings.user, t.settings.password)
        except smtplib.SMTPAuthenticationError as exc:
            conn.close()
            if 400 <= exc.smtp_code < 500:  # e.g. 454: try again later, not wrong credentials
                raise SlowDown(f"SMTP login: {_answer(exc.smtp_code, exc.smtp_error)}") from None
            raise UsageError(
                f"SMTP login refused: {_answer(exc.smtp_code, exc.smtp_error)}",
                hint="check CADENCE_SMTP_USER / CADENCE_SMTP_PASSWORD",
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            conn.close()
            raise TemporaryFailure(f"SMTP setup failed: {exc}") from None
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        self.sent_here = 0
        self.dirty = False
        self.connections += 1

    def drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def quit(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
            finally:
                self.drop()

    def deliver(self, envelope: Envelope, data: bytes, may_go: Callable[[], bool]) -> str:
        """One message, slowing down and trying again while the server asks for it.
        `may_go` is asked once `MAIL FROM` is on its way, before its answer is read, and
        before any wait to slow down; when it says no, nothing of the message is handed
        over (`Withheld`)."""
        wait = self.transport.options.slow_down_first
        for tries in range(1, SLOW_DOWN_TRIES + 1):
            try:
                try:
                    return self._transaction(envelope, data, may_go)
                except _Stale:
                    return self._transaction(envelope, data, may_go)  # on a new connection
            except SlowDown as exc:
                self.slow_downs += 1
                if tries == SLOW_DOWN_TRIES:
                    raise TemporaryFailure(
                        f"{exc} (the server asked to slow down {tries} times in a row)"
                    ) from None
                if not may_go():  # the runner's commit is not kept waiting by the back-off
                    raise Withheld() from None
                time.sleep(wait)
                wait = min(wait * 2, SLOW_DOWN_MAX)
        raise AssertionError("unreachable")

    @property
    def warm(self) -> bool:
        """Open, clean and under `per_connection`: `MAIL FROM` is the next thing sent."""
        limit = self.transport.options.per_connection
        return self.conn is not None and not self.dirty and self.sent_here < limit

    def _begin(self, envelope: Envelope) -> bool:
        """Open (or reuse) the session and send `MAIL FROM`, without reading its answer;
        True when the connection was reused. Failures here are known-not-sent."""
        t = self.transport
        if self.conn is not None and self.sent_here >= t.options.per_connection:
            self.quit()
        self._reset()  # only after a transaction that did not end
        reused = self.conn is not None
        self.open()
        conn = self.conn
        assert conn is not None
        tail = ""
        # An address the builder did not mark but that is not ASCII needs SMTPUTF8 as well
        # (smtplib would fail to encode the command).
        if envelope.smtputf8 or not (envelope.sender + envelope.recipient).isascii():
            if not conn.has_extn("smtputf8"):
                raise PermanentFailure(
                    f"the address {envelope.recipient} needs SMTPUTF8 (it is not all ASCII), "
                    f"which {t.host} does not offer; send it through a server that offers "
                    "SMTPUTF8, or use an ASCII address for this contact",
                    recipient=False,
                )
            conn.command_encoding = "utf-8"
            tail = " SMTPUTF8 BODY=8BITMIME" if conn.has_extn("8bitmime") else " SMTPUTF8"
        self.sent_here += 1
        self.dirty = True
        try:
            conn.putcmd("mail", f"FROM:{_path(envelope.sender)}{tail}")
        except (OSError, smtplib.SMTPException) as exc:
            self.drop()
            if reused:
                raise _Stale(f"connection failed before DATA: {exc}") from None
            raise TemporaryFailure(f"connection failed before DATA: {exc}") from None
        return reused

    def _refused(self, code: int, text: bytes, *, recipient: bool, stage: str) -> Exception:
        """The exception for a refusal before DATA; the session is reset or dropped."""
        answer = _answer(code, text)
        if code == 421:  # the server is closing this session
            self.drop()
            return SlowDown(f"{stage}: {answer}")
        self._reset()
        if code >= 500:
            return PermanentFailure(answer, recipient=recipient)
        if stage == "MAIL":  # a 4xx to MAIL is about the sender or the load, not the address
            return SlowDown(f"{stage}: {answer}")
        return TemporaryFailure(answer)

    def _reset(self) -> None:
        if self.conn is None or not self.dirty:
            return
        try:
            code, _ = self.conn.rset()
        except (OSError, smtplib.SMTPException):
            code = 0
        self.dirty = False
        if code != 250:
            self.drop()

    def _transaction(self, envelope: Envelope, data: bytes, may_go: Callable[[], bool]) -> str:
        reused = self._begin(envelope)
        conn = self.conn
        assert conn is not None
        if not may_go():  # the runner committed `sending` while the server answered MAIL
            try:  # keep the conversation in step; `RSET` before the next transaction
                conn.getreply()
            except (OSError, smtplib.SMTPException):
                self.drop()  # not worth a new connection: this message is not to go
            raise Withheld()
        t = self.transport
        # --- before DATA: every failure is known-not-sent --------------------------------
        try:
            code, text = conn.getreply()
            if code in _AUTH_CODES:
                self._reset()
                raise _auth_refused(code, text, t.settings.user)
            if code >= 400:
                raise self._refused(code, text, recipient=False, stage="MAIL")
            if t.rate is not None:  # spaces the messages the server takes, not the MAILs
                t.rate.wait()
            conn.putcmd("rcpt", f"TO:{_path(envelope.recipient)}")
            code, text = conn.getreply()
            if code in _AUTH_CODES:
                self._reset()
                raise _auth_refused(code, text, t.settings.user)
            if code >= 400:
                raise self._refused(code, text, recipient=True, stage="RCPT")
            code, text = conn.docmd("DATA")
            if code != 354:
                raise self._refused(code, text, recipient=False, stage="DATA")
        except (OSError, smtplib.SMTPException) as exc:
            self.drop()
            if reused and isinstance(exc, OSError | smtplib.SMTPServerDisconnected):
                raise _Stale(f"connection failed before DATA: {exc}") from None
            raise TemporaryFailure(f"connection failed before DATA: {exc}") from None
        # --- DATA: from the first byte of the message on, a failure is an unknown outcome --
        payload = _LEADING_DOT.sub(b"..", data)
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        payload += b".\r\n"
        try:
            if armed("during-data"):
                half = len(payload) // 2
                conn.send(payload[:half])
                fault("during-data")
                conn.send(payload[half:])
            else:
                conn.send(payload)
            code, text = conn.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self.drop()
            raise DeliveryUnknown(f"connection failed during DATA: {exc}") from None
        self.dirty = False  # answered after the final dot: the transaction is over
        if code == 250:
            fault("after-250")
            return _answer(code, text)
        # The server answered after the final dot: it did not take the message.
        if code == 421:
            self.drop()
        if code >= 500:
            raise PermanentFailure(_answer(code, text), recipient=False)
        raise TemporaryFailure(_answer(code, text))


def _no_delay(conn: smtplib.SMTP) -> None:
    """Every write goes out at once (see the module's docstring for what Nagle cost)."""
    if conn.sock is not None:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Ready:
    """The runner's `ready` for one `send_many`, called once: by the only session when it
    first asks, with its `MAIL FROM` on the way (the commit then runs while the server
    answers), or before several sessions start, or at the end if nobody asked."""

    def __init__(self, ready: Ready | None, messages: int) -> None:
        self._ready = ready
        self._messages = messages
        self.allowed: Collection[int] | None = None  # None until called
        self.error: BaseException | None = None  # what `ready` raised

    def allows(self, index: int) -> bool:
        if self.allowed is None:
            self.decide()
        assert self.allowed is not None
        return index in self.allowed

    def decide(self) -> None:
        if self.allowed is not None:
            return
        try:
            self.allowed = range(self._messages) if self._ready is None else set(self._ready())
        except BaseException as exc:  # nothing is handed over; `send_many` raises it
            self.error = exc
            self.allowed = ()


class SmtpTransport:
    """`connections` parallel sessions; `in_doubt` is their number (one message each)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        implicit_tls: bool,
        settings: SmtpSettings,
        options: SmtpOptions | None = None,
    ):
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.settings = settings
        self.options = options or SmtpOptions()
        self.rate = RateLimit(self.options.rate) if self.options.rate else None
        self.sessions = [_Session(self) for _ in range(self.options.connections)]
        self._pool: ThreadPoolExecutor | None = None
        self._context: ssl.SSLContext | None = None

    @property
    def in_doubt(self) -> int:
        return self.options.connections

    def context(self) -> ssl.SSLContext:
        if self._context is None:  # one context for every session: loads the CA once
            context = ssl.create_default_context(cafile=self.settings.cafile)
            if self.settings.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._context = context
        return self._context

    def open(self) -> None:
        """Open the first session (a refused login or a server that is down shows now,
        before anything is committed `sending`); the others open when first used."""
        self.sessions[0].open()

    def send_many(
        self, messages: Sequence[tuple[Envelope, bytes]], ready: Ready | None = None
    ) -> list[Result]:
        """Message i on session i (modulo their number), the sessions in parallel; one
        result per message, in order. Given at most `in_doubt` messages, each session
        has at most one in hand. With one session, `ready` runs while the server
        answers its `MAIL FROM`; with several, before they start (their commits are
        shared, and measured no faster overlapped)."""
        results: list[Result | None] = [None] * len(messages)
        used = self.sessions[: max(1, min(len(messages), len(self.sessions)))]
        gate = _Ready(ready, len(messages))

        def work(number: int) -> None:
            session = used[number]
            down: TransportDown | None = None
            for index in range(number, len(messages), len(used)):
                if down is not None:  # this session cannot go on: the rest is not handed over
                    results[index] = down
                    continue
                if gate.allowed is None and not session.warm:
                    # A reconnect or an RSET comes first: the runner's commit (the record
                    # of what was sent before) does not wait for it.
                    gate.decide()
                if gate.allowed is not None and index not in gate.allowed:
                    results[index] = Withheld()
                    continue  # known before its session began: the server never hears of it
                envelope, data = messages[index]
                may_go = functools.partial(gate.allows, index)
                try:
                    results[index] = session.deliver(envelope, data, may_go)
                except TransportDown as exc:
                    results[index] = down = exc
                except (TemporaryFailure, PermanentFailure, DeliveryUnknown) as exc:
                    results[index] = exc
                except CadenceError as exc:  # a refused login on a reconnect, before MAIL
                    results[index] = down = TransportDown(exc)

        if len(used) == 1:
            try:
                work(0)
            finally:
                gate.decide()  # `ready` is always called, once
        else:
            # On this thread, before the sessions start: `ready` uses the store, and a
            # store's connection belongs to the thread that opened it.
            gate.decide()
            if gate.error is not None:
                raise gate.error
            if self._pool is None:
                self._pool = ThreadPoolExecutor(len(self.sessions), thread_name_prefix="smtp")
            futures = [self._pool.submit(work, n) for n in range(len(used))]
            errors = [e for f in futures if (e := f.exception()) is not None]
            if errors:  # not a delivery outcome (a bug): the run stops on it
                raise errors[0]
        if gate.error is not None:
            raise gate.error
        done = [r for r in results if r is not None]
        assert len(done) == len(messages)
        return done

    def flush(self) -> None:
        """Nothing to do: every message was handed over, and answered, in `send_many`."""

    def close(self) -> None:
        for session in self.sessions:
            session.quit()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
