"""Reading built messages back the way a mail reader does (strict parse, RFC 2047)."""

from __future__ import annotations

import base64
import re
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage

from cadence_engine.engine.model import Cadence

_WORDS = re.compile(r"(?:=\?utf-8\?b\?[A-Za-z0-9+/=]*\?=\s*)+")


def parse_strict(data: bytes) -> EmailMessage:
    """`data` parsed with `email.policy.strict` (a defect raises), with no defects."""
    head = data.split(b"\r\n\r\n", 1)[0]
    if head.isascii():
        msg = message_from_bytes(data, policy=policy.strict)
    else:  # SMTPUTF8 (RFC 6532): the header block is UTF-8
        msg = message_from_string(data.decode("utf-8"), policy=policy.strict)
    assert isinstance(msg, EmailMessage)
    assert not msg.defects
    return msg


def raw_headers(data: bytes) -> list[tuple[str, str]]:
    """The header block as written: each field unfolded (CRLF removed), none blank."""
    head = data.decode("utf-8").split("\r\n\r\n", 1)[0]
    fields: list[tuple[str, str]] = []
    for line in head.split("\r\n"):
        assert line.strip(" \t"), f"a blank line inside the header block: {head!r}"
        assert len(line.encode()) <= 998
        if line[0] in " \t":
            name, value = fields[-1]
            fields[-1] = (name, value + line)
        else:
            name, sep, value = line.partition(":")
            assert sep and re.fullmatch(r"[!-9;-~]+", name), line
            fields.append((name, value))
    return fields


def display_name(raw: str) -> str:
    """The display name of an address field as written, decoded as RFC 2047 says
    (whitespace between adjacent encoded words is not part of the text), else
    unquoted, else the atoms as they stand."""
    value = raw.strip(" ")
    if not value.endswith(">"):
        return ""
    phrase = value[: value.rindex(" <")].strip(" ")
    if phrase.startswith("=?"):
        assert _WORDS.fullmatch(phrase), phrase
        chunks = re.findall(r"=\?utf-8\?b\?([A-Za-z0-9+/=]*)\?=", phrase)
        return b"".join(base64.b64decode(c) for c in chunks).decode("utf-8")
    if phrase.startswith('"'):
        return re.sub(r"\\(.)", r"\1", phrase[1:-1])
    return phrase


def stepless_cadence(**settings: object) -> Cadence:
    """Cadence `C` of sender Dana <dana@acme.example> with no steps: what building one
    message needs."""
    return Cadence.from_data(
        {
            "cadence": 1,
            "name": "C",
            "sender": {"name": "Dana", "email": "dana@acme.example"},
            **({"settings": settings} if settings else {}),
            "templates": {},
            "steps": [],
        }
    )
