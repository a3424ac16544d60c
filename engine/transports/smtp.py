"""`smtp://host:port` (STARTTLS) and `smtps://host:port` (implicit TLS), with smtplib.

The conversation is driven phase by phase (EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA) so
every failure is classified by where it happened: anything before the end of DATA is known
not delivered (retry, or a bounce for 5xx to RCPT); a broken connection after the message
body started is an unknown outcome, never retried automatically.

Environment: CADENCE_SMTP_USER / CADENCE_SMTP_PASSWORD (AUTH, never from a file),
CADENCE_SMTP_CAFILE (trust this CA, e.g. a test server's), CADENCE_SMTP_INSECURE=1 (skip
certificate checks; tests only), CADENCE_SMTP_TIMEOUT (seconds, default 30).
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import UsageError
from engine.faults import fault
from engine.transports import (
    DeliveryUnknown,
    Envelope,
    PermanentFailure,
    Result,
    TemporaryFailure,
    TransportDown,
)

# Answers that mean "log in first" or "your login is refused": no message can go until
# the settings change, so the run stops instead of failing every email of the batch.
_AUTH_CODES = (530, 535)

_LEADING_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    user: str | None = None
    password: str | None = None
    cafile: str | None = None
    insecure: bool = False
    timeout: float = 30.0


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


class SmtpTransport:
    in_doubt = 1  # one session, one message at a time

    def __init__(self, host: str, port: int, *, implicit_tls: bool, settings: SmtpSettings):
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.settings = settings
        self._conn: smtplib.SMTP | None = None

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.cafile)
        if self.settings.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def open(self) -> None:
        """Connect, secure and authenticate; failures here are known-not-sent."""
        if self._conn is not None:
            return
        timeout = self.settings.timeout
        conn: smtplib.SMTP
        try:
            if self.implicit_tls:
                conn = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=timeout, context=self._context()
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        try:
            conn.ehlo()
            if not self.implicit_tls:
                if not conn.has_extn("starttls"):
                    raise TemporaryFailure(
                        f"{self.host}:{self.port} does not offer STARTTLS; refusing to send "
                        "in clear text"
                    )
                conn.starttls(context=self._context())
                conn.ehlo()
            if self.settings.user:
                assert self.settings.password is not None
                _login(conn, self.host, self.settings.user, self.settings.password)
        except smtplib.SMTPAuthenticationError as exc:
            conn.close()
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
        self._conn = conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _reset(self, conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def send_many(self, messages: Sequence[tuple[Envelope, bytes]]) -> list[Result]:
        results: list[Result] = []
        for n, (envelope, data) in enumerate(messages):
            try:
                results.append(self._send(envelope, data))
            except TransportDown as down:
                results.extend([down] * (len(messages) - n))
                break
            except (TemporaryFailure, PermanentFailure, DeliveryUnknown) as exc:
                results.append(exc)
        return results

    def _send(self, envelope: Envelope, data: bytes) -> str:
        self.open()
        conn = self._conn
        assert conn is not None
        # --- before DATA: every failure is known-not-sent --------------------------------
        try:
            code, text = conn.mail(envelope.sender)
            if code in _AUTH_CODES:
                self._reset(conn)
                raise _auth_refused(code, text, self.settings.user)
            if code >= 400:
                self._reset(conn)
                if code >= 500:
                    raise PermanentFailure(_answer(code, text), recipient=False)
                raise TemporaryFailure(_answer(code, text))
            code, text = conn.rcpt(envelope.recipient)
            if code in _AUTH_CODES:
                self._reset(conn)
                raise _auth_refused(code, text, self.settings.user)
            if code >= 400:
                self._reset(conn)
                if code >= 500:
                    raise PermanentFailure(_answer(code, text), recipient=True)
                raise TemporaryFailure(_answer(code, text))
            code, text = conn.docmd("DATA")
            if code != 354:
                self._reset(conn)
                if code >= 500:
                    raise PermanentFailure(_answer(code, text), recipient=False)
                raise TemporaryFailure(_answer(code, text))
        except TransportDown:
            raise
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise TemporaryFailure(f"connection failed before DATA: {exc}") from None
        # --- DATA: from the first byte of the message on, a failure is an unknown outcome --
        payload = _LEADING_DOT.sub(b"..", data)
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        payload += b".\r\n"
        try:
            half = len(payload) // 2
            conn.send(payload[:half])
            fault("during-data")
            conn.send(payload[half:])
            code, text = conn.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise DeliveryUnknown(f"connection failed during DATA: {exc}") from None
        if code == 250:
            fault("after-250")
            return _answer(code, text)
        # The server answered after the final dot: it did not take the message.
        if code >= 500:
            raise PermanentFailure(_answer(code, text), recipient=False)
        raise TemporaryFailure(_answer(code, text))

    def flush(self) -> None:
        """Nothing to do: every message was handed over, and answered, in `send_many`."""

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
            finally:
                self._drop()
