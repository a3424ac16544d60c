"""The runner's message bytes: the direct serializer equals what policy SMTP writes.

`build_message` writes the common case (short printable-ASCII headers, a 7bit body)
directly; the reference here is the plain `EmailMessage` construction it replaces.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

import pytest

from cadence_engine.engine.delivery import build_message, clean, message_id
from cadence_engine.engine.model import Cadence
from cadence_engine.engine.unsubscribe import mailto


def _cadence(name: str = "Dana Reyes", email: str = "dana@acme.example") -> Cadence:
    return Cadence.from_data(
        {
            "cadence": 1,
            "name": "C",
            "sender": {"name": name, "email": email},
            "templates": {},
            "steps": [],
        }
    )


def _reference(
    cadence: Cadence,
    to_name: str,
    to_email: str,
    subject: str,
    text: str,
    msg_id: str,
    references: list[str],
    date: datetime,
    unsubscribe: str,
) -> bytes:
    """The message as `EmailMessage(policy=SMTP)` builds it, header by header."""
    from email.utils import format_datetime, formataddr

    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = clean(formataddr((clean(cadence.sender.name), cadence.sender.email), "utf-8"))
    msg["To"] = clean(formataddr((clean(to_name), clean(to_email)), "utf-8"))
    msg["Subject"] = clean(subject)
    msg.set_raw("Date", format_datetime(date))
    msg.set_raw("Message-ID", msg_id)
    if references:
        msg.set_raw("In-Reply-To", references[-1])
        msg.set_raw("References", "\r\n ".join(references))
    unsub = [f"<{clean(unsubscribe)}>"]
    if not unsubscribe.startswith("mailto:"):
        unsub.append(f"<{mailto(cadence.sender.email, TOKEN)}>")
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # One URL a line, never encoded: lines may pass 78 characters (RFC 5322: up to 998).
    msg.set_raw("List-Unsubscribe", _Exact("List-Unsubscribe", ",\r\n ".join(unsub)))
    msg["MIME-Version"] = "1.0"
    msg["Content-Type"] = 'text/plain; charset="utf-8"'
    msg["Content-Transfer-Encoding"] = "7bit"
    msg.set_payload(text if text.endswith("\n") else text + "\n")
    return msg.as_bytes()


class _Exact:
    """A header the generator writes exactly as given."""

    def __init__(self, name: str, text: str) -> None:
        self.name, self.text = name, text

    def fold(self, *, policy: object) -> str:
        return f"{self.name}: {self.text}\r\n"


TOKEN = "AbC_dEf-123456789012"
IDS = [message_id("C", f"uid-{i}", "hello", "dana@acme.example") for i in range(3)]
DATE = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("to_name", "subject", "text", "references", "unsubscribe"),
    [
        ("Ava Stone", "Northwind and on-call load", "Hi Ava,\n\nA line.\n", [], "mailto:x"),
        ("", "Re: Northwind", "no newline at the end", IDS[:2], "https://u.example/t0k"),
        ("Ben", "s" * 70, "Hi\n\n> quoted\n> lines\n", IDS[:1], "https://u.example/" + "a" * 50),
        ("O'Brien, Pat", "Hi", "x" * 900 + "\n", [], "mailto:dana@acme.example"),
        ("Pat (Ops)", "tab\there", "line\n" * 50, IDS, "https://u.example/?t=1&x=2"),
    ],
    ids=["plain", "thread-https", "long-subject", "900-char-line", "specials"],
)
def test_direct_bytes_equal_the_policy(
    to_name: str, subject: str, text: str, references: list[str], unsubscribe: str
) -> None:
    cadence = _cadence()
    args = (cadence, to_name, "ava@northwind.example", subject, text, IDS[2], references)
    built = build_message(
        cadence=cadence,
        to_name=to_name,
        to_email="ava@northwind.example",
        subject=subject,
        text=text,
        msg_id=IDS[2],
        references=references,
        date=DATE,
        unsubscribe=unsubscribe,
        unsubscribe_token=TOKEN,
    )
    assert built.data == _reference(*args, DATE, unsubscribe)


@pytest.mark.parametrize(
    ("to_name", "subject", "text"),
    [
        ("Zoë Ångström", "Grüße", "Grüße\n"),
        ("Pat", "Hi\r\nBcc: x@evil.example", "x" * 901 + "\n"),
        ("A" * 80, "S", "body\n"),
    ],
    ids=["non-ascii", "injection-long-line", "long-name"],
)
def test_other_messages_still_go_through_the_policy(to_name: str, subject: str, text: str) -> None:
    built = build_message(
        cadence=_cadence(),
        to_name=to_name,
        to_email="zoe@globex.example",
        subject=subject,
        text=text,
        msg_id=IDS[0],
        references=IDS[1:],
        date=DATE,
        unsubscribe="mailto:dana@acme.example?subject=unsubscribe",
    )
    head, _, _ = built.data.partition(b"\r\n\r\n")
    assert b"\nBcc:" not in head
    assert all(line[:1] in b" \t" or b":" in line for line in head.split(b"\r\n"))
