"""What a contact sees: rendered emails with their thread (R3), task texts, compose links (R6).

Every template renders in the shared sandbox (engine.templates) with the context
`{"contact": contact.fields, "sender": {"name", "email"}, "unsubscribe_url": url}`.
The quoted copy under a follow-up is always the campaign template rendered for the
contact (R3), never what a rep edited in an email task.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import quote

from jinja2 import nodes
from jinja2.runtime import Context

from .contacts import Contact
from .delivery import clean, clean_body
from .errors import InputError
from .limits import MAX_BODY_CHARS, MAX_SUBJECT_CHARS
from .model import Cadence, Step, StepKind
from .templates import compile_template, environment, run_bounded

# Plans and previews have no enrolment yet, so no real unsubscribe token exists.
PREVIEW_UNSUBSCRIBE_URL = "https://unsubscribe.example/preview"


class RenderedEmail(NamedTuple):
    """One email as sent: `body` is the step's own text, `quoted` the previous email (R3)."""

    step_id: str
    to: str
    subject: str
    body: str
    quoted: str | None = None
    thread_step_id: str | None = None

    @property
    def text(self) -> str:
        """The full text body as sent: own text, then the quoted previous email."""
        if self.quoted is None:
            return self.body
        return f"{self.body.rstrip()}\n\n{self.quoted}"


class TaskText(NamedTuple):
    """What a task shows the rep: a title and rendered notes."""

    step_id: str
    title: str
    notes: str


def template_context(cadence: Cadence, contact: Contact, unsubscribe_url: str) -> dict[str, Any]:
    return {
        "contact": contact.fields,
        "sender": {"name": cadence.sender.name, "email": cadence.sender.email},
        "unsubscribe_url": unsubscribe_url,
    }


class ContactRenderer:
    """Renders many templates for one contact, building the template variables once.

    Two savings keep `plan --render` over 100,000 contacts fast, both exact:
    - `Template.render` merges the globals into a new ChainMap on every call; here the
      merged variables are built once per contact and each render gets a fresh Context
      over them (what `Template.render` does inside, so `{% set %}` never leaks between
      templates; same sandbox, same compiled code);
    - a template that reads only `contact.<field>`, `sender` and `unsubscribe_url` is a
      pure function of those values, so its output is memoised on them (`TemplateMemo`).
    """

    def __init__(self, context: dict[str, Any]) -> None:
        self.context = context
        self.variables = {**environment().globals, **context}
        self._constants: tuple[str, ...] | None = None

    def __call__(self, source: str, limit: int = MAX_BODY_CHARS) -> str:
        memo = _MEMOS.get(source) or TemplateMemo.of(source)
        if not memo.on:
            return self.render(source, limit)
        key = tuple(map(self.context["contact"].get, memo.fields))
        if memo.names:
            if self._constants is None:
                self._constants = tuple(repr(self.context.get(n)) for n in sorted(_PURE_NAMES))
            key += self._constants
        found = memo.texts.get(key)
        if memo.lookups < PROBE:
            memo.judge(found is not None)
        if found is None:
            found = self.render(source, limit)
            if len(memo.texts) < MEMO_LIMIT:
                memo.texts[key] = found
        return found

    def render(self, source: str, limit: int = MAX_BODY_CHARS) -> str:
        """One bounded render (engine.templates): output, loop steps and time."""
        template = compile_template(source)
        ctx = Context(environment(), self.variables, template.name, template.blocks)
        try:
            return run_bounded(lambda: template.root_render_func(ctx), limit)
        except Exception as exc:  # the template's own failure: the user's to fix, no bug
            raise TemplateRenderError(source, self.context.get("contact"), exc) from None


class TemplateRenderError(InputError):
    """A template that compiles but fails when rendered for one contact (`{{ 1/0 }}`, an
    attribute the sandbox refuses, a range too large): a clear error naming the contact
    and the template, never an internal error."""

    def __init__(self, source: str, contact: Any, exc: BaseException) -> None:
        who = contact.get("email") if isinstance(contact, dict) else None
        first = next((line.strip() for line in source.splitlines() if line.strip()), "")
        excerpt = first if len(first) <= 60 else first[:57] + "..."
        reason = str(exc) or type(exc).__name__
        super().__init__(
            f"template {excerpt!r} does not render"
            + (f" for {who}" if who else "")
            + f": {type(exc).__name__}: {reason}",
            hint="fix the template; `cadence preview CADENCE --sample` renders every step",
        )

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries (render workers)
        return (InputError, (self.message,), {"hint": self.hint})


MEMO_LIMIT = 50_000  # texts per template
PROBE = 2_000  # lookups before a template's memo is judged
MIN_HIT_RATE = 0.25


class TemplateMemo:
    """Rendered texts of one pure template by the values it reads.

    Bounded; and a template whose outputs rarely repeat (it reads a first name *and* a
    company) is judged after PROBE lookups and then no longer memoised, so a varied list
    costs no memory and almost no time.
    """

    def __init__(self, reads: tuple[tuple[str, ...], tuple[str, ...]] | None) -> None:
        self.on = reads is not None
        self.fields, self.names = reads if reads is not None else ((), ())
        self.texts: dict[tuple[str | None, ...], str] = {}
        self.lookups = self.hits = 0

    @classmethod
    def of(cls, source: str) -> TemplateMemo:
        memo = _MEMOS[source] = cls(template_reads(source))
        return memo

    def judge(self, hit: bool) -> None:
        self.lookups += 1
        self.hits += hit
        if self.lookups == PROBE and self.hits < PROBE * MIN_HIT_RATE:
            self.on = False
            self.texts.clear()


_MEMOS: dict[str, TemplateMemo] = {}

_PURE_NAMES = frozenset({"sender", "unsubscribe_url"})


@functools.lru_cache(maxsize=1024)
def template_reads(source: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The contact fields and other variables `source` reads, if it reads nothing else.

    None (no memo) when the template uses anything that could make it impure or hide
    what it reads: other names (globals such as `lipsum`, loop or `set` variables), the
    whole `contact` mapping, or the `random` filter.
    """
    ast = environment().parse(source)
    parent: dict[int, nodes.Node] = {}
    for node in ast.find_all(nodes.Node):
        for child in node.iter_child_nodes():
            parent[id(child)] = node
    fields: set[str] = set()
    names: set[str] = set()
    for name in ast.find_all(nodes.Name):
        up = parent.get(id(name))
        if name.ctx != "load":
            return None
        if name.name in _PURE_NAMES:
            names.add(name.name)
        elif name.name != "contact":
            return None
        elif isinstance(up, nodes.Getattr) and up.node is name:
            fields.add(up.attr)
        elif (
            isinstance(up, nodes.Getitem)
            and up.node is name
            and isinstance(up.arg, nodes.Const)
            and isinstance(up.arg.value, str)
        ):
            fields.add(up.arg.value)
        else:
            return None
    if any(f.name == "random" for f in ast.find_all(nodes.Filter)):
        return None
    return tuple(sorted(fields)), tuple(sorted(names))


class _Thread:
    """Renders a contact's emails once each, so a follow-up chain reuses its parents."""

    def __init__(
        self,
        cadence: Cadence,
        contact: Contact,
        unsubscribe_url: str,
        sent_at: Mapping[str, datetime] | None = None,
    ) -> None:
        self.cadence = cadence
        self.contact = contact
        self.render = ContactRenderer(template_context(cadence, contact, unsubscribe_url))
        self.texts: dict[str, tuple[str, str, str]] = {}
        self.sent_at = sent_at or {}  # step id → when that email really went out

    def parts(self, step: Step) -> tuple[str, str, str]:
        """(subject, own body, full text with its quote) of an email step; every quoted
        level carries its attribution, dated when that email's send time is known."""
        found = self.texts.get(step.id)
        if found is not None:
            return found
        spec = step.email
        assert spec is not None, f"step {step.id!r} is not an email"
        template = self.cadence.templates[spec.template]
        body = self.render(template.body)
        text = body
        previous = self.cadence.previous_email(step) if spec.follow_up else None
        subject = None
        if previous is None:
            subject = self.render(template.subject, MAX_SUBJECT_CHARS) if template.subject else None
        else:
            # R3: a follow-up is a reply in the previous email's thread, so its subject is
            # always `Re: <previous subject>`; a subject of its own template is not used
            # (a different subject would break the thread in mail clients).
            parent_subject, _, parent_text = self.parts(previous)
            subject = reply_subject(parent_subject)
            sender = self.cadence.sender
            when = self.sent_at.get(previous.id)
            text = f"{body.rstrip()}\n\n{quote_email(parent_text, sender.name, sender.email, when)}"
        found = self.texts[step.id] = (subject or "", body, text)
        return found

    def email(self, step: Step) -> RenderedEmail:
        subject, body, _ = self.parts(step)
        assert step.email is not None
        previous = self.cadence.previous_email(step) if step.email.follow_up else None
        if previous is None:
            return RenderedEmail(step.id, self.contact.email, subject, body)
        sender = self.cadence.sender
        when = self.sent_at.get(previous.id)
        quoted = quote_email(self.parts(previous)[2], sender.name, sender.email, when)
        return RenderedEmail(step.id, self.contact.email, subject, body, quoted, previous.id)

    def task(self, step: Step) -> TaskText:
        name = display_name(self.contact)
        notes = self.render(step.notes) if step.notes else ""
        if step.kind is StepKind.CUSTOM:
            title = self.render(step.title or step.id)
        elif step.kind is StepKind.CALL:
            title = f"Call {name}"
        elif step.kind is StepKind.INMAIL:
            title = f"InMail {name}"
        else:
            title = f"Email {name}: {self.parts(step)[0]}"
        return TaskText(step.id, title, notes)


def display_name(contact: Contact) -> str:
    """`First Last`, or the address when the list has no name (task titles)."""
    fields = contact.fields
    return (
        " ".join(p for p in (fields.get("first_name"), fields.get("last_name")) if p)
        or contact.email
    )


def step_text_reads(cadence: Cadence) -> dict[str, tuple[str, ...] | None]:
    """Per step, the contact fields its rendered texts (`render_step_texts`) depend on.

    A follow-up depends on its parent too (Re: subject and quote). None when a template
    is not a pure function of contact fields (see `template_reads`). Call and InMail
    titles are not covered: they are `Call <display_name>` / `InMail <display_name>`.
    """
    out: dict[str, tuple[str, ...] | None] = {}
    for step in cadence.steps:
        sources: list[str] = []
        if step.email is not None:
            template = cadence.templates[step.email.template]
            sources += [template.body, *([template.subject] if template.subject else [])]
        else:
            sources += [x for x in (step.notes, step.title) if x]
        reads: set[str] | None = set()
        for source in sources:
            found = template_reads(source)
            if found is None or reads is None:
                reads = None
                break
            reads.update(found[0])
        previous = cadence.previous_email(step)
        if step.email is not None and step.email.follow_up and previous is not None:
            parent = out.get(previous.id)
            reads = None if parent is None or reads is None else reads | set(parent)
        out[step.id] = tuple(sorted(reads)) if reads is not None else None
    return out


def reply_subject(subject: str) -> str:
    """`Re: <subject>`, without stacking `Re: Re:` along a follow-up chain."""
    return subject if subject[:3].lower() == "re:" else f"Re: {subject}"


def quote_email(text: str, sender_name: str, sender_email: str, sent_at: datetime | None) -> str:
    """The previous email under its attribution line, each line prefixed with `> `."""
    lines = text.rstrip("\n").split("\n")
    quoted = "\n".join(f"> {x}" if x else ">" for x in lines)
    return f"{attribution(sender_name, sender_email, sent_at)}\n{quoted}\n"


def attribution(sender_name: str, sender_email: str, sent_at: datetime | None) -> str:
    """`On Tue, 03 Mar 2026 at 09:00, Dana Reyes <dana@acme.example> wrote:` (the date in
    `sent_at`'s own zone; left out when the send time is not known yet)."""
    who = f"{sender_name} <{sender_email}>" if sender_name else sender_email
    when = f"On {sent_at:%a, %d %b %Y at %H:%M}, " if sent_at is not None else ""
    return f"{when}{who} wrote:"


def render_email(
    cadence: Cadence,
    step: Step,
    contact: Contact,
    *,
    unsubscribe_url: str,
    thread_sent_at: Mapping[str, datetime] | None = None,
) -> RenderedEmail:
    """Render email step `step` for `contact`: subject (always `Re: <previous subject>` for
    a follow-up, R3), body, the quoted previous email (R3) and the step it replies to.

    Every quoted level of a follow-up chain is dated with its email's real send time:
    `thread_sent_at` maps earlier email step ids to when they went out (sent, or marked
    done by hand), each in the caller's chosen zone. A level whose time is not known is
    quoted undated."""
    return _Thread(cadence, contact, unsubscribe_url, thread_sent_at).email(step)


def render_task_text(
    cadence: Cadence, step: Step, contact: Contact, *, unsubscribe_url: str = ""
) -> TaskText:
    """Title and notes of a task step (call, InMail, custom, or an email task's title)."""
    return _Thread(cadence, contact, unsubscribe_url or PREVIEW_UNSUBSCRIBE_URL).task(step)


def render_step_texts(
    cadence: Cadence, contact: Contact, *, unsubscribe_url: str
) -> dict[str, tuple[str, str]]:
    """(subject, full text) of every email step and (title, notes) of every other task."""
    texts = StepTexts(cadence, contact, unsubscribe_url)
    return {step.id: texts.get(step) for step in cadence.steps}


class StepTexts:
    """One contact's step texts, rendered on demand (a plan renders only what it misses)."""

    def __init__(self, cadence: Cadence, contact: Contact, unsubscribe_url: str) -> None:
        self.thread = _Thread(cadence, contact, unsubscribe_url)

    def get(self, step: Step) -> tuple[str, str]:
        """(subject, full text) for an email step, (title, notes) for another task."""
        if step.email is not None:
            subject, _, text = self.thread.parts(step)
            return subject, text
        task = self.thread.task(step)
        return task.title, task.notes


def compose_links(to: str, subject: str, body: str) -> dict[str, str]:
    """Prefilled compose windows for an email task (R6): Gmail, Outlook on the web, mailto.

    The subject is cleaned as the message builder cleans a header (`delivery.clean`): a
    prefilled subject with a newline could become a header in the rep's mail client. The
    body is the body as sent (`delivery.clean_body`: LF line ends, no stray controls).
    Every value is percent-encoded as UTF-8 with nothing left safe, so `&`, `+`, `#`,
    `=` and `?` in a subject or body cannot end a parameter early, and spaces are `%20`
    (a `+` would show up literally in mail clients). mailto bodies use CRLF (RFC 6068).
    """
    body = clean_body(body)
    s, b = quote(clean(subject), safe=""), quote(body, safe="")
    crlf_body = quote(body.replace("\n", "\r\n"), safe="")
    return {
        "gmail": f"https://mail.google.com/mail/?view=cm&fs=1&to={quote(to, safe='@')}"
        f"&su={s}&body={b}",
        "outlook": f"https://outlook.office.com/mail/deeplink/compose?to={quote(to, safe='@')}"
        f"&subject={s}&body={b}",
        "mailto": f"mailto:{quote(to, safe='@')}?subject={s}&body={crlf_body}",
    }
