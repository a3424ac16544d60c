"""Rendered emails, threads (R3), task texts and compose links (R6)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from cadence_engine.engine.contacts import Contact
from cadence_engine.engine.messages import (
    ContactRenderer,
    compose_links,
    render_email,
    render_step_texts,
    render_task_text,
    reply_subject,
    step_text_reads,
    template_context,
    template_reads,
)
from cadence_engine.engine.model import Cadence
from cadence_engine.engine.templates import render

from .helpers.plan_cadences import email, make_cadence, task

AVA = Contact(
    "ava@northwind.example",
    {
        "email": "ava@northwind.example",
        "first_name": "Ava",
        "last_name": "Nakamura",
        "company": "Northwind",
    },
    None,
    1,
)
NAMELESS = Contact("x@example.com", {"email": "x@example.com"}, None, 2)
URL = "https://u.example/t"
TEMPLATES = {
    "a": {
        "subject": "Hello {{ contact.first_name | default('there') }}",
        "body": "Body A\n\nBye\n",
    },
    "b": {"body": "Body B for {{ contact.company }}\n"},
    "c": {"body": "Body C {{ unsubscribe_url }}\n"},
}


def thread_cadence() -> Cadence:
    return make_cadence(
        [
            email("a", 1, {"at": "10:00"}),
            email("b", 2, {"at": "10:00"}, template="b", follow_up=True),
            email("c", 3, {"at": "10:00"}, template="c", follow_up=True),
            task("call", 4, notes="Ask {{ contact.company }}"),
            task("card", 5, "custom", title="Card for {{ contact.first_name }}"),
            task("li", 5, "inmail"),
        ],
        templates=TEMPLATES,
    )


def test_a_follow_up_replies_in_the_thread_and_quotes_the_template() -> None:
    cad = thread_cadence()
    b = render_email(cad, cad.step("b"), AVA, unsubscribe_url=URL)
    assert (b.subject, b.thread_step_id) == ("Re: Hello Ava", "a")
    assert b.body == "Body B for Northwind\n"
    assert b.quoted == "Dana Reyes <dana@acme.example> wrote:\n> Body A\n>\n> Bye\n"
    assert b.text == "Body B for Northwind\n\n" + b.quoted


def test_a_follow_up_of_a_follow_up_does_not_stack_re_and_nests_quotes() -> None:
    cad = thread_cadence()
    c = render_email(cad, cad.step("c"), AVA, unsubscribe_url=URL)
    assert c.subject == "Re: Hello Ava"
    assert c.body == f"Body C {URL}\n"
    assert c.quoted is not None
    assert "> Body B for Northwind\n>\n> Dana Reyes <dana@acme.example> wrote:\n> > Body A" in (
        c.quoted
    )


def test_the_quote_is_dated_when_the_send_time_is_known() -> None:
    cad = thread_cadence()
    sent = datetime(2026, 3, 6, 9, 30)
    b = render_email(cad, cad.step("b"), AVA, unsubscribe_url=URL, thread_sent_at={"a": sent})
    assert b.quoted is not None
    assert b.quoted.startswith(
        "On Fri, 06 Mar 2026 at 09:30, Dana Reyes <dana@acme.example> wrote:"
    )


def test_reply_subject() -> None:
    assert reply_subject("Hi") == "Re: Hi"
    assert reply_subject("RE: Hi") == "RE: Hi"


def test_task_texts() -> None:
    cad = thread_cadence()
    call = render_task_text(cad, cad.step("call"), AVA)
    assert (call.title, call.notes) == ("Call Ava Nakamura", "Ask Northwind")
    assert render_task_text(cad, cad.step("card"), AVA).title == "Card for Ava"
    assert render_task_text(cad, cad.step("li"), NAMELESS).title == "InMail x@example.com"


def test_render_step_texts_covers_every_step() -> None:
    texts = render_step_texts(thread_cadence(), AVA, unsubscribe_url=URL)
    assert list(texts) == ["a", "b", "c", "call", "card", "li"]
    assert texts["a"] == ("Hello Ava", "Body A\n\nBye\n")
    assert texts["li"] == ("InMail Ava Nakamura", "")


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        (
            "Hi {{ contact.first_name | default('x') }} {{ sender.name }}",
            (("first_name",), ("sender",)),
        ),
        ("{{ contact['company'] }} {{ unsubscribe_url }}", (("company",), ("unsubscribe_url",))),
        ("plain text", ((), ())),
        ("{{ lipsum(1) }}", None),  # a global (and random)
        ("{% set x = 1 %}{{ x }}", None),
        ("{% for k in contact %}{{ k }}{% endfor %}", None),  # the whole mapping
        ("{{ contact }}", None),
        ("{{ [1, 2] | random }}", None),
    ],
)
def test_template_reads(source: str, reads: object) -> None:
    assert template_reads(source) == reads


def test_memoised_rendering_equals_plain_jinja_rendering() -> None:
    contacts = [
        Contact(f"p{i}@x.example", {"email": f"p{i}@x.example", "first_name": n}, None, i)
        for i, n in enumerate(["Ava", "Ben", "Ava", "Zoë", "Ben"] * 3)
    ]
    sources = [
        "Hi {{ contact.first_name | default('there') }}, from {{ sender.name }}",
        "{% set g = 'Hey' %}{{ g }} {{ contact.first_name }}",
        "{{ contact.missing | default('none') }} {{ unsubscribe_url }}",
    ]
    cad = make_cadence()
    for contact in contacts:
        context = template_context(cad, contact, URL)
        renderer = ContactRenderer(context)
        for source in sources:
            assert renderer(source) == render(source, context)


def test_step_text_reads_follow_the_thread() -> None:
    reads = step_text_reads(thread_cadence())
    assert reads["a"] == ("first_name",)
    assert reads["b"] == ("company", "first_name")  # its own body plus a's subject and body
    assert reads["call"] == ("company",)


def test_compose_links_encode_everything_that_could_break_a_url() -> None:
    subject = "Q&A + pricing #2 = 50% off?"
    body = "Hi Zoë,\nline two & more\r\nend"
    links = compose_links("zoë+tag@example.com", subject, body)
    gmail = urlsplit(links["gmail"])
    assert (gmail.scheme, gmail.netloc, gmail.path) == ("https", "mail.google.com", "/mail/")
    assert "#" not in links["gmail"] and " " not in links["gmail"]
    q = parse_qs(gmail.query)
    body = "Hi Zoë,\nline two & more\nend"  # as sent: LF line ends
    assert q["su"] == [subject] and q["body"] == [body] and q["to"] == ["zoë+tag@example.com"]
    assert q["view"] == ["cm"]
    outlook = urlsplit(links["outlook"])
    assert outlook.netloc == "outlook.office.com"
    q = parse_qs(outlook.query)
    assert q["subject"] == [subject] and q["body"] == [body]
    mailto = links["mailto"]
    assert mailto.startswith("mailto:zo%C3%AB%2Btag@example.com?subject=Q%26A%20%2B%20pricing")
    # RFC 6068: line breaks are CRLF, spaces %20 (a '+' would show up literally).
    query = dict(part.split("=", 1) for part in urlsplit(mailto).query.split("&"))
    assert unquote(query["body"]) == "Hi Zoë,\r\nline two & more\r\nend"
    assert "%0D%0A" in query["body"] and "+" not in query["body"]


def test_every_quoted_level_carries_its_own_send_date() -> None:
    cad = thread_cadence()
    sent = {"a": datetime(2026, 3, 2, 10, 0), "b": datetime(2026, 3, 3, 10, 5)}
    c = render_email(cad, cad.step("c"), AVA, unsubscribe_url=URL, thread_sent_at=sent)
    assert c.quoted is not None
    assert c.quoted.startswith(
        "On Tue, 03 Mar 2026 at 10:05, Dana Reyes <dana@acme.example> wrote:\n> Body B"
    )
    assert (
        "\n> On Mon, 02 Mar 2026 at 10:00, Dana Reyes <dana@acme.example> wrote:\n> > Body A"
        in (c.quoted)
    )
    # The level whose send time is not known yet keeps its attribution, undated.
    only_b = render_email(
        cad, cad.step("c"), AVA, unsubscribe_url=URL, thread_sent_at={"b": sent["b"]}
    )
    assert "\n> Dana Reyes <dana@acme.example> wrote:\n> > Body A" in (only_b.quoted or "")
