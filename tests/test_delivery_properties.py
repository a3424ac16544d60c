"""Properties of the message builder over arbitrary Unicode in every contact field.

Whatever a contact list or a cadence holds (encoded words, CR LF, U+2028, bidi
overrides, lone surrogates, 500-character tokens), every built message parses with
`email.policy.strict`, has exactly the intended headers, and its Subject, From and To
decode back to the cleaned text; the only exception ever raised is `MessageError`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadence_engine.engine.addresses import parse_address
from cadence_engine.engine.delivery import (
    MessageError,
    build_message,
    clean,
    clean_body,
    message_id,
)
from cadence_engine.engine.model import Cadence
from tests.helpers.mail import display_name, parse_strict, raw_headers

HOSTILE_PARTS = [
    "=?utf-8?q?Acme=0D=0ABcc=3A_x@evil.example?=",
    "=?utf-8?b?QWNtZQ0KUmVwbHktVG86IHhAZXZpbC5leGFtcGxl?=",
    "=?",
    "?=",
    "\r\n",
    "\r\n\r\n",
    "\n",
    "\r",
    "\t",
    "\x00",
    "\x85",
    "\u2028",
    "\u2029",
    "\u202e",
    "\ufeff",
    "\u200d",
    "\ud800",
    "Bcc: x@evil.example",
    '"',
    "\\",
    "<",
    ">",
    ",",
    ";",
    "(",
    ")",
    "@",
    " ",
    "  ",
    "x" * 90,
    "ü" * 60,
    "漢" * 40,
    "👩\u200d💻",
]
ANY_CHAR = st.characters(codec=None, exclude_categories=())
TEXT = st.lists(st.one_of(st.sampled_from(HOSTILE_PARTS), st.text(ANY_CHAR, max_size=30))).map(
    "".join
)
LOCAL = st.one_of(
    st.sampled_from(["ava", "o'brien", "a.b+tag", "jörg", "名前", "x" * 64]),
    st.text(ANY_CHAR, min_size=1, max_size=20),
)
DOMAIN = st.one_of(
    st.sampled_from(["northwind.example", "bücher.example", "xn--bcher-kva.example", "a.b.co"]),
    st.text(ANY_CHAR, min_size=1, max_size=20),
)
DATE = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _cadence(name: str, email: str) -> Cadence:
    return Cadence.from_data(
        {
            "cadence": 1,
            "name": "C",
            "sender": {"name": name, "email": email},
            "templates": {},
            "steps": [],
        }
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=TEXT,
    last=TEXT,
    subject=TEXT,
    body=TEXT,
    sender_name=TEXT,
    local=LOCAL,
    domain=DOMAIN,
    follow_up=st.booleans(),
    https=st.booleans(),
)
def test_every_built_message_is_exactly_what_was_meant(
    first: str,
    last: str,
    subject: str,
    body: str,
    sender_name: str,
    local: str,
    domain: str,
    follow_up: bool,
    https: bool,
) -> None:
    to_email = f"{local}@{domain}"
    cadence = _cadence(sender_name, "dana@acme.example")
    ids = [message_id("C", "uid", s, "dana@acme.example") for s in ("a", "b", "c")]
    to_name = " ".join(p for p in (first, last) if p)
    try:
        built = build_message(
            cadence=cadence,
            to_name=to_name,
            to_email=to_email,
            subject=subject,
            text=body,
            msg_id=ids[2],
            references=ids[:2] if follow_up else [],
            date=DATE,
            unsubscribe="https://acme.example/u/tok" if https else "mailto:dana@acme.example",
        )
    except MessageError as exc:
        assert "address" in str(exc)  # only the recipient's address can be unwritable here
        return
    msg = parse_strict(built.data)
    raw = raw_headers(built.data)
    expected = ["From", "To", "Subject", "Date", "Message-ID"]
    expected += ["In-Reply-To", "References"] * follow_up
    expected += ["List-Unsubscribe-Post"] * https
    expected += ["List-Unsubscribe", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"]
    assert [name for name, _ in raw] == expected
    assert sorted(msg.keys()) == sorted(expected)
    fields = dict(raw)
    assert str(msg["Subject"]) == clean(subject) == built.subject
    address = parse_address(to_email)
    (to,) = msg["To"].addresses
    assert to.addr_spec == address.wire == built.envelope.recipient
    assert built.envelope.smtputf8 == address.smtputf8
    assert display_name(fields["To"]) == clean(to_name)
    (sender,) = msg["From"].addresses
    assert sender.addr_spec == "dana@acme.example"
    assert display_name(fields["From"]) == clean(sender_name)
    if fields["To"].count("=?") <= 1:  # one encoded word: Python's reading agrees too,
        # up to whitespace: its phrase parser folds a space next to U+00A0 into one
        assert to.display_name.split() == clean(to_name).split()
    text = clean_body(body)
    assert msg.get_content().replace("\r\n", "\n") == (text if text.endswith("\n") else text + "\n")
    assert msg["Message-ID"] == ids[2]


@pytest.mark.parametrize(
    ("email", "why"),
    [
        ("evil\u202eelpmaxe@a.example", "RIGHT-TO-LEFT OVERRIDE"),
        ("a@b", "needs a dot"),
        ("a b@c.example", "may not contain ' '"),
        ("a@-bad-.example", "domain label"),
        ("x@" + "a" * 64 + ".example", "domain"),
        ("a..b@c.example", "two in a row"),
        ("@c.example", "exactly one @"),
    ],
)
def test_an_unwritable_address_is_a_message_error(email: str, why: str) -> None:
    with pytest.raises(MessageError, match=re.escape(why)):
        build_message(
            cadence=_cadence("Dana", "dana@acme.example"),
            to_name="X",
            to_email=email,
            subject="S",
            text="B\n",
            msg_id=message_id("C", "u", "s", "dana@acme.example"),
            references=[],
            date=DATE,
            unsubscribe="mailto:dana@acme.example",
        )


def test_idn_domains_go_out_in_ascii_and_utf8_local_parts_need_smtputf8() -> None:
    def build(to: str, sender: str) -> tuple[str, bool, bytes]:
        out = build_message(
            cadence=_cadence("Dana", sender),
            to_name="",
            to_email=to,
            subject="S",
            text="B\n",
            msg_id=message_id("C", "u", "s", sender),
            references=[],
            date=DATE,
            unsubscribe="mailto:x@acme.example",
        )
        return out.envelope.recipient, out.envelope.smtputf8, out.data

    recipient, utf8, data = build("idn@Bücher.example", "dana@acme.example")
    assert (recipient, utf8) == ("idn@xn--bcher-kva.example", False)
    assert b"To: idn@xn--bcher-kva.example\r\n" in data
    recipient, utf8, data = build("jörg@a.example", "dana@acme.example")
    assert (recipient, utf8) == ("jörg@a.example", True)
    assert "To: jörg@a.example\r\n".encode() in data
    _, _, data = build("a@b.example", "dana@bücher.example")
    assert b"From: Dana <dana@xn--bcher-kva.example>\r\n" in data
    assert re.search(rb"Message-ID: <[0-9a-f]{32}@xn--bcher-kva\.example>", data)
