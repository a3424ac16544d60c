"""The classifier against realistic samples (tests/cases/inbound/) and arbitrary input."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence_engine.engine.inbound.classify import Kind, classify, header, parse, return_date
from tests.helpers.inbound_cases import all_samples

RECEIVED = date(2026, 3, 3)
SAMPLES = all_samples()


@pytest.mark.parametrize("case", SAMPLES, ids=[s.name for s in SAMPLES])
def test_sample_is_classified_as_expected(case) -> None:  # type: ignore[no-untyped-def]
    verdict = classify(parse(case.render(contact="x.person@example.org")), RECEIVED)
    assert verdict.kind == Kind(case.expect), verdict
    if verdict.kind is Kind.AUTO_REPLY:
        assert verdict.return_date == case.return_date
    if verdict.kind in (Kind.BOUNCE, Kind.DELAYED):
        assert verdict.recipients == ("x.person@example.org",)
        assert verdict.original_ids == ("<a1@acme.example>",)
    if verdict.kind is Kind.UNSUBSCRIBE:
        assert verdict.token == "TOKENtoken12345678"
    if verdict.kind is Kind.REPLY and case.name == "reply-gmail-references":
        assert verdict.references == ("<a1@acme.example>",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I am back on 2026-03-10.", date(2026, 3, 10)),
        ("Out until 10/03/2026, then at my desk.", date(2026, 3, 10)),
        ("Back 3/17/2026 (US).", date(2026, 3, 17)),
        ("away until 17 March", date(2026, 3, 17)),
        ("returning March 17th", date(2026, 3, 17)),
        ("ik ben terug op 9 maart", date(2026, 3, 9)),
        ("zurück am 9. März", date(2026, 3, 9)),
        ("wieder da ab 09.03.", date(2026, 3, 9)),
        ("de retour le 9 mars 2026", date(2026, 3, 9)),
        ("vuelvo el 9 de marzo", date(2026, 3, 9)),
        ("from 1 March to 2 June 2026", None),  # beyond 60 days: not believed
        ("meeting at 12.30, back soon", None),  # a time, not a date
        ("I was away on 1 March", None),  # in the past
        ("Back on 9 March. For the summit on 20 March ask Bo.", date(2026, 3, 9)),
        ("Ich bin bis zum 9. März nicht im Büro. Die Messe am 20.03.2026 auch.", date(2026, 3, 9)),
    ],
)
def test_return_date_forms(text: str, expected: date | None) -> None:
    assert return_date(text, RECEIVED) == expected


def test_a_reply_quoting_no_thread_is_still_a_reply_candidate() -> None:
    msg = parse(b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n")
    assert classify(msg, RECEIVED).kind is Kind.REPLY


def test_auto_submitted_no_is_not_an_auto_reply() -> None:
    msg = parse(b"From: a@b.example\r\nAuto-Submitted: no\r\nSubject: hi\r\n\r\nhello\r\n")
    assert classify(msg, RECEIVED).kind is Kind.REPLY


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
@pytest.mark.parametrize(
    "subject",
    ["Réponse automatique : Hello Ivy", "Respuesta automática: Hola", "Nicht im Büro",
     "Außer Haus bis Freitag", "En congé jusqu'au 9 mars"],
)  # fmt: skip
def test_an_out_of_office_subject_in_raw_8bit_is_an_auto_reply(subject: str, encoding: str) -> None:
    # RFC 6532 clients send UTF-8 headers unencoded; old ones send Latin-1.
    raw = b"From: ivy@example.org\r\nSubject: " + subject.encode(encoding) + b"\r\n\r\nhi\r\n"
    verdict = classify(parse(raw), RECEIVED)
    assert verdict.kind is Kind.AUTO_REPLY, verdict
    assert verdict.reason == "out-of-office subject"


_subject_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=60
)


@settings(max_examples=200, deadline=None)
@given(_subject_text)
def test_a_raw_utf8_header_reads_as_its_rfc2047_form(text: str) -> None:
    from email.header import Header

    encoded = Header(text, "utf-8").encode().encode("ascii")
    raw = header(parse(b"Subject: " + text.encode("utf-8") + b"\r\n\r\n"), "Subject")
    assert raw == header(parse(b"Subject: " + encoded + b"\r\n\r\n"), "Subject")
    assert raw == " ".join(text.split())


_header_names = st.sampled_from(
    ["From", "To", "Subject", "Content-Type", "Auto-Submitted", "In-Reply-To", "References",
     "Precedence", "X-Failed-Recipients", "Content-Transfer-Encoding", "Message-ID",
     "Content-Disposition", "X-MS-Exchange-Message-Is-Ndr"]
)  # fmt: skip
_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        ["multipart/report; report-type=delivery-status; boundary=x", "multipart/mixed",
         "message/rfc822", "text/plain; charset=bogus-charset", "=?utf-8?b?!!!?=",
         "<a@b> <c@d", "base64", "quoted-printable", "mailer-daemon@x.example"]
    ),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(st.tuples(_header_names, _values), max_size=10),
    body=st.one_of(st.binary(max_size=600), st.text(max_size=600).map(str.encode)),
)
def test_arbitrary_messages_never_crash_the_classifier(
    headers: list[tuple[str, str]], body: bytes
) -> None:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("utf-8", "surrogateescape")
    verdict = classify(parse(head + b"\r\n" + body), RECEIVED)
    assert isinstance(verdict.kind, Kind)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash_the_classifier(data: bytes) -> None:
    assert isinstance(classify(parse(data), RECEIVED).kind, Kind)
