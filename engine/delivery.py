"""Outgoing messages: Message-ID, threading and unsubscribe headers, MIME bytes.

Built with the standard `email` package (EmailMessage, policy SMTP). Header values are
set pre-folded with `set_raw` when they are short printable ASCII — the common case, and
five times faster than letting the policy parse each one — and through the policy (RFC
2047 encoding, folding) otherwise. Either way every value first loses its control
characters, so a newline in contact data can never start a header of its own.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

from engine.model import Cadence, Step
from engine.schedule import thread_of
from engine.transports import Envelope
from engine.unsubscribe import links as unsubscribe_links
from engine.unsubscribe import mailto as unsubscribe_mailto

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
_MAX_HEADER = 78
# Printable ASCII lines of at most 900 characters: sent as 7bit, as they are.
_SEVEN_BIT_TEXT = re.compile(r"(?:[\x20-\x7e]{0,900}\n)*[\x20-\x7e]{0,900}")
_POLICY = policy.SMTP


def _constant(name: str, value: str) -> Any:
    """A header parsed and folded once, for headers every message shares.

    The generator reads Content-Type and Content-Transfer-Encoding back from the message
    (parsing a raw string each time) and refolds header objects on every message; a
    constant header object answers both from what was computed here.
    """
    header = _POLICY.header_factory(name, value)
    folded: str = header.fold(policy=_POLICY)

    def fold(self: object, *, policy: object) -> str:
        return folded

    cls = type(f"Constant{type(header).__name__}", (type(header),), {"fold": fold})
    return cls(name, value)


_MIME_VERSION = _constant("MIME-Version", "1.0")
_CONTENT_TYPE = _constant("Content-Type", 'text/plain; charset="utf-8"')
_SEVEN_BIT = _constant("Content-Transfer-Encoding", "7bit")
_ONE_CLICK = _constant("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")


@dataclass(frozen=True, slots=True)
class Outgoing:
    envelope: Envelope
    data: bytes
    subject: str


def message_id(cadence_name: str, enrolment_uid: str, step_id: str, sender: str) -> str:
    """The deterministic Message-ID of (cadence, enrolment, step): a resend reuses it."""
    digest = hashlib.sha256(f"{cadence_name}\0{enrolment_uid}\0{step_id}".encode()).hexdigest()
    domain = sender.rpartition("@")[2] or "cadence.invalid"
    return f"<{digest[:32]}@{domain}>"


def unsubscribe_url(cadence: Cadence, token: str) -> str:
    """The link `{{ unsubscribe_url }}` shows: one-click https when configured, else the
    token's mailto (engine.unsubscribe)."""
    return unsubscribe_links(cadence.sender.email, token).primary


def thread_ids(cadence: Cadence, step: Step, enrolment_uid: str) -> list[str]:
    """Message-IDs of the emails `step` replies to, oldest first (R3 References)."""
    chain: list[str] = []
    current = step
    while (parent_id := thread_of(cadence, current)) is not None:
        chain.append(message_id(cadence.name, enrolment_uid, parent_id, cadence.sender.email))
        current = cadence.step(parent_id)
    chain.reverse()
    return chain


def clean(value: str) -> str:
    """One line of header text: control characters (CR, LF, TAB, NUL, …) become spaces."""
    return _CONTROL.sub(" ", value).strip()


def _set(msg: EmailMessage, name: str, value: str) -> None:
    value = clean(value)
    if len(name) + 2 + len(value) <= _MAX_HEADER and _PRINTABLE_ASCII.match(value):
        msg.set_raw(name, value)
    else:
        msg[name] = value


def _date(when: datetime) -> str:
    # Equal instants in other zones compare equal: the offset is part of the key.
    return _date_text(when, when.utcoffset())


@functools.lru_cache(maxsize=16)
def _date_text(when: datetime, offset: timedelta | None) -> str:
    return format_datetime(when)  # a batch shares one date


@functools.lru_cache(maxsize=1024)
def _address(display: str, addr: str) -> str:
    """`Display <addr>` of cleaned parts (formataddr adds no control characters)."""
    return formataddr((clean(display), clean(addr)), charset="utf-8")


def build_message(
    *,
    cadence: Cadence,
    to_name: str,
    to_email: str,
    subject: str,
    text: str,
    msg_id: str,
    references: list[str],
    date: datetime,
    unsubscribe: str,
    unsubscribe_token: str = "",
) -> Outgoing:
    """The message bytes; `unsubscribe` is the primary List-Unsubscribe link, and the
    mailto beside an https one carries `unsubscribe_token` (engine.unsubscribe)."""
    subject = clean(subject)
    mailto_unsubscribe = unsubscribe_mailto(cadence.sender.email, unsubscribe_token)
    headers: list[tuple[str, str | Any]] = [
        ("From", _address(cadence.sender.name, cadence.sender.email)),
        ("To", _address(to_name, to_email)),
        ("Subject", subject),
        ("Date", _date(date)),
        ("Message-ID", msg_id),
    ]
    if references:
        # Message-IDs are ours (hex@domain): safe to write raw, one per folded line.
        headers.append(("In-Reply-To", references[-1]))
        headers.append(("References", "\r\n ".join(references)))
    unsub = [f"<{clean(unsubscribe)}>"]
    if not unsubscribe.startswith("mailto:"):
        unsub.append(f"<{clean(mailto_unsubscribe)}>")
        # RFC 8058 one-click needs an HTTPS URI to POST to.
        headers.append(("List-Unsubscribe-Post", _ONE_CLICK))
    if all(_PRINTABLE_ASCII.match(u) and len(u) < _MAX_HEADER - 20 for u in unsub):
        headers.append(("List-Unsubscribe", ",\r\n ".join(unsub)))
    elif all(_PRINTABLE_ASCII.match(u) and len(u) < _MAX_URL_LINE for u in unsub):
        # One URL per line, never broken or RFC 2047-encoded (a mail client could not
        # read it back); RFC 5322 allows lines up to 998 characters.
        headers.append(("List-Unsubscribe", _Prefolded(",\r\n ".join(unsub))))
    else:
        headers.append(("List-Unsubscribe", _Policed(", ".join(unsub))))
    seven_bit = _SEVEN_BIT_TEXT.fullmatch(text) is not None
    if seven_bit:
        headers += [
            ("MIME-Version", _MIME_VERSION),
            ("Content-Type", _CONTENT_TYPE),
            ("Content-Transfer-Encoding", _SEVEN_BIT),
        ]
        body = text if text.endswith("\n") else text + "\n"
    envelope = Envelope(sender=cadence.sender.email, recipient=to_email, message_id=msg_id)
    data = _serialize(headers, body) if seven_bit else None
    if data is None:
        data = _through_policy(headers, text, seven_bit)
    return Outgoing(envelope=envelope, data=data, subject=subject)


class _Policed(str):
    """A header value that must go through the policy (RFC 2047 encoding, folding)."""


class _Prefolded(str):
    """A printable ASCII header value folded by us, written exactly as it is."""


_MAX_URL_LINE = 900


def _verbatim(name: str, value: _Prefolded) -> Any:
    """A header object that folds to `value` as it is (for `_through_policy`)."""
    header = _POLICY.header_factory(name, value.replace("\r\n", ""))
    text = f"{name}: {value}\r\n"

    def fold(self: object, *, policy: object) -> str:
        return text

    cls = type(f"Verbatim{type(header).__name__}", (type(header),), {"fold": fold})
    return cls(name, value.replace("\r\n", ""))


def _raw_fold(name: str, value: str) -> str | None:
    """What policy SMTP writes for a raw header value, or None if it would refold it.

    The policy's own rule (`EmailPolicy._fold`): a value whose lines all fit in 78
    characters is written as it is, its lines joined by CRLF; anything else is refolded.
    """
    if isinstance(value, _Policed):
        return None
    if isinstance(value, _Prefolded):
        return f"{name}: {value}\r\n"
    if "\r\n" not in value:  # one line: the common case
        if len(name) + 2 + len(value) <= _MAX_HEADER and _PRINTABLE_ASCII.match(value):
            return f"{name}: {value}\r\n"
        return None
    lines = value.split("\r\n")
    if (
        not all(lines)
        or len(lines[0]) + len(name) + 2 > _MAX_HEADER
        or any(len(line) > _MAX_HEADER for line in lines[1:])
        or not all(_PRINTABLE_ASCII.match(line) for line in lines)
    ):
        return None
    return f"{name}: " + "\r\n".join(lines) + "\r\n"


def _serialize(headers: list[tuple[str, str | Any]], body: str) -> bytes | None:
    """The bytes `EmailMessage(policy=SMTP).as_bytes()` would give, without building one.

    Only for the common case — every header printable ASCII that the policy would write
    unchanged, a 7bit body — and None otherwise. Byte-for-byte the same output is
    checked in tests/test_runner_delivery.py.
    """
    out: list[str] = []
    for name, value in headers:
        if isinstance(value, str):
            folded = _raw_fold(name, value)
            if folded is None:
                return None
        else:
            folded = value.fold(policy=_POLICY)
        out.append(folded)
    out.append("\r\n")
    out.append(body.replace("\n", "\r\n"))
    return "".join(out).encode("ascii")


def _through_policy(headers: list[tuple[str, str | Any]], text: str, seven_bit: bool) -> bytes:
    msg = EmailMessage(policy=_POLICY)
    for name, value in headers:
        if isinstance(value, _Policed):
            msg[name] = str(value)
        elif isinstance(value, _Prefolded):
            msg[name] = _verbatim(name, value)
        elif isinstance(value, str) and name in ("From", "To", "Subject"):
            _set(msg, name, value)
        else:
            msg.set_raw(name, value)  # ours, or a constant header object kept as it is
    if seven_bit:
        msg.set_payload(text if text.endswith("\n") else text + "\n")
    else:
        msg.set_content(text)
    return msg.as_bytes()
