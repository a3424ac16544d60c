"""What an incoming message is: reply, auto-reply, bounce, unsubscribe, or nothing to us.

Pure functions over `email.message.EmailMessage`, one small rule per kind, tried in the
order of `RULES` (the first that answers wins): an unsubscribe is an explicit wish and goes
first; a bounce is machine mail that often also carries `Auto-Submitted`, so it comes
before the auto-reply rule; anything else is a candidate reply. Whom a message concerns
(which enrolment) is decided afterwards against the store (`engine.inbound.poll`); these
rules only read the message. A rule never raises on malformed input: it answers or not.

To recognise a new kind of message, add a function `(msg, received) -> Verdict | None` to
`RULES` at the right place, with a sample under tests/cases/inbound/.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from email import message_from_bytes, message_from_string, policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import parseaddr

from ..unsubscribe import PLUS_TAG

RETURN_WINDOW_DAYS = 60  # a return date further away is not believed (SPEC §8)
_TEXT_LIMIT = 20_000  # characters of a body the text rules read


class Kind(enum.StrEnum):
    REPLY = "reply"
    AUTO_REPLY = "auto-reply"
    BOUNCE = "bounce"
    DELAYED = "delayed"  # a 4.x.x or `Action: delayed` report: logged, not acted on
    UNSUBSCRIBE = "unsubscribe"
    IGNORED = "ignored"
    OWN = "own"  # our own sent copy: said by the poll (a Message-ID of ours), no rule


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    reason: str  # which rule answered, and on what evidence
    sender: str = ""  # From address, lower-cased
    references: tuple[str, ...] = ()  # In-Reply-To and References (a reply's thread)
    recipients: tuple[str, ...] = ()  # a bounce's failed recipients
    original_ids: tuple[str, ...] = ()  # a bounce's returned Message-ID
    status: str = ""  # a bounce's status code
    token: str = ""  # an unsubscribe token
    return_date: date | None = None  # an auto-reply's return date


Rule = Callable[[EmailMessage, date], "Verdict | None"]

_MSG_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"(?:^|[\s#(])([45])\d\d[\s-]")


def parse(data: bytes) -> EmailMessage:
    """A message from its bytes (never raises: the email package repairs what it can).

    Headers stay raw strings (policy compat32): the rules read a handful of them as text,
    and the default policy's structured parse of every header fetched was 80 % of the
    time of a poll. `header` decodes RFC 2047 words where they matter.
    """
    msg = message_from_bytes(data, _class=EmailMessage, policy=policy.compat32)
    assert isinstance(msg, EmailMessage)
    return msg


def header(msg: Message, name: str) -> str:
    """A header as one line of text, '' when absent.

    Raw 8-bit text (RFC 6532 UTF-8, or a legacy Latin-1 client) is decoded from its bytes:
    compat32's own `get` wraps such a value in a `Header` whose text has lost them. Then
    RFC 2047 encoded words are decoded.
    """
    wanted = name.lower()
    raw = next((value for key, value in msg.raw_items() if key.lower() == wanted), None)
    if raw is None:
        return ""
    text = str(raw)
    if not text.isascii():
        # Parsed from bytes, each byte above 0x7F is a surrogate; from text, a character.
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that stands for no byte
            data = text.encode("utf-8", "replace")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    if "=?" in text:
        with contextlib.suppress(Exception):  # a malformed encoded word: keep it as it is
            text = str(make_header(decode_header(text)))
    return " ".join(text.split())


def sender_of(msg: Message) -> str:
    return parseaddr(header(msg, "From"))[1].lower()


def message_ids(text: str) -> tuple[str, ...]:
    return tuple(_MSG_ID.findall(text))


def text_of(msg: Message, limit: int = _TEXT_LIMIT) -> str:
    """The readable text of a message: its text/plain parts, else its HTML without tags."""
    plain: list[str] = []
    html: list[str] = []
    for part in _walk(msg):
        ctype = part.get_content_type()
        attached = "attachment" in header(part, "Content-Disposition").lower()
        if ctype not in ("text/plain", "text/html") or attached:
            continue
        body = _decoded(part)
        (plain if ctype == "text/plain" else html).append(body)
        if sum(map(len, plain)) > limit:
            break
    if plain:
        return "\n".join(plain)[:limit]
    joined = re.sub(r"<[^>]*>", " ", "\n".join(html))
    return re.sub(r"&nbsp;|&#160;", " ", joined)[:limit]


def _walk(msg: Message) -> Iterator[Message]:
    try:
        yield from msg.walk()
    except Exception:
        return


def _decoded(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return ""
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name
        return payload.decode("utf-8", errors="replace")


# -- unsubscribe ------------------------------------------------------------------------

_PLUS_TOKEN = re.compile(rf"\+{re.escape(PLUS_TAG)}([A-Za-z0-9_-]{{8,}})@", re.IGNORECASE)
_SUBJECT_TOKEN = re.compile(r"\bunsubscribe[\s:]+([A-Za-z0-9_-]{8,})\b", re.IGNORECASE)
_RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")


def unsubscribe(msg: EmailMessage, received: date) -> Verdict | None:
    """A mail to our `List-Unsubscribe` mailto: the token in the plus address or subject."""
    for name in _RECIPIENT_HEADERS:
        found = _PLUS_TOKEN.search(header(msg, name))
        if found:
            return Verdict(
                Kind.UNSUBSCRIBE, f"mail to the unsubscribe address ({name})",
                sender=sender_of(msg), token=found.group(1),
            )  # fmt: skip
    found = _SUBJECT_TOKEN.search(header(msg, "Subject"))
    if found:
        return Verdict(
            Kind.UNSUBSCRIBE, "unsubscribe subject", sender=sender_of(msg), token=found.group(1)
        )
    return None


# -- bounces ----------------------------------------------------------------------------


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str):  # a report the parser left as text: read its blocks
        return [message_from_string(b) for b in re.split(r"\r?\n\s*\r?\n", payload) if b.strip()]
    return []


def _returned_ids(msg: Message) -> tuple[str, ...]:
    """Message-IDs of the returned original (message/rfc822 or text/rfc822-headers)."""
    ids: list[str] = []
    for part in _walk(msg):
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            for inner in _blocks(part):
                ids.extend(message_ids(header(inner, "Message-ID")))
        elif ctype in ("text/rfc822-headers", "text/global-headers"):
            text = _decoded(part) or str(part.get_payload())
            ids.extend(message_ids(header(message_from_string(text), "Message-ID")))
    return tuple(dict.fromkeys(ids))


def _address_of(field: str) -> str:
    """`rfc822; someone@example.com` → the address."""
    _, _, value = field.partition(";")
    found = _ADDRESS.search(value or field)
    return found.group(0).lower() if found else ""


def dsn(msg: EmailMessage, received: date) -> Verdict | None:
    """RFC 3464: multipart/report; report-type=delivery-status, per-recipient blocks."""
    if msg.get_content_type() != "multipart/report":
        return None
    report = next(
        (p for p in _walk(msg) if p.get_content_type() == "message/delivery-status"), None
    )
    if report is None:
        return None
    failed: list[str] = []
    delayed: list[str] = []
    statuses: list[str] = []
    for block in _blocks(report):
        recipient = _address_of(header(block, "Final-Recipient")) or _address_of(
            header(block, "Original-Recipient")
        )
        if not recipient:
            continue
        action = header(block, "Action").lower()
        status = _STATUS.search(header(block, "Status"))
        code = status.group(0) if status else ""
        if action == "failed" and code.startswith("5"):
            failed.append(recipient)
            statuses.append(code)
        elif action in ("failed", "delayed"):
            delayed.append(recipient)
            statuses.append(code or action)
    if not failed and not delayed:
        return None
    kind = Kind.BOUNCE if failed else Kind.DELAYED
    return Verdict(
        kind, f"delivery status notification ({', '.join(dict.fromkeys(statuses))})",
        sender=sender_of(msg), recipients=tuple(dict.fromkeys(failed or delayed)),
        original_ids=_returned_ids(msg), status=statuses[0],
    )  # fmt: skip


_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliverable|undelivered|delivery status notification|delivery (has )?failed|"
    r"mail delivery (failed|failure|subsystem)|returned mail|failure notice|"
    r"non remis|unzustellbar|onbestelbaar|no se puede entregar|not delivered",
    re.IGNORECASE,
)
_FAILURE_TEXT = re.compile(
    r"address not found|couldn't be found|could not be found|delivery has failed|"
    r"does not exist|doesn't exist|user unknown|no such user|recipient address rejected|"
    r"mailbox unavailable|permanent(ly)? (error|fatal)|failed permanently|"
    r"could not be delivered|wasn't delivered|undeliverable",
    re.IGNORECASE,
)


def non_rfc_bounce(msg: EmailMessage, received: date) -> Verdict | None:
    """Exchange NDRs, Gmail's "Address not found", Exim's and qmail's plain-text bounces.

    From a mailer daemon, or an NDR by header or subject; the failed recipient from
    `X-Failed-Recipients` (Exim, Gmail) or from the text; the returned Message-ID from an
    attached original or the copy quoted in the text.
    """
    sender = sender_of(msg)
    is_ndr = bool(header(msg, "X-MS-Exchange-Message-Is-Ndr")) or bool(
        header(msg, "X-Failed-Recipients")
    )
    if not (is_ndr or _DAEMON.match(sender) or _BOUNCE_SUBJECT.search(header(msg, "Subject"))):
        return None
    text = text_of(msg)
    failure = _FAILURE_TEXT.search(text)
    status = _STATUS.search(text)
    code = status.group(0) if status else ""
    if not code:
        smtp = _SMTP_CODE.search(text)
        code = f"{smtp.group(1)}.0.0" if smtp else ""
    if not code and not failure:
        return None
    if not code:
        code = "5.0.0"  # "address not found" and the like, with no code given
    recipients = [
        a.lower() for a in _ADDRESS.findall(header(msg, "X-Failed-Recipients"))
    ] or _recipients_in_text(text, sender)
    if not recipients:
        return None
    ids = _returned_ids(msg) or _quoted_ids(text) or _thread(msg)  # Gmail: In-Reply-To
    kind = Kind.BOUNCE if code.startswith("5") else Kind.DELAYED
    return Verdict(
        kind, f"non-delivery report ({code})", sender=sender,
        recipients=tuple(dict.fromkeys(recipients)), original_ids=ids, status=code,
    )  # fmt: skip


def _recipients_in_text(text: str, sender: str) -> list[str]:
    """Addresses in a bounce's text before the returned copy, daemon's own left out."""
    head = re.split(r"(?im)^-+ ?(original message|this is a copy)|^original message headers", text)
    found = [a.lower() for a in _ADDRESS.findall(head[0])]
    return [a for a in found if a != sender and not _DAEMON.match(a)][:5]


def _quoted_ids(text: str) -> tuple[str, ...]:
    found = re.findall(r"(?im)^\s*message-id:\s*(<[^<>\s]+@[^<>\s]+>)", text)
    return tuple(dict.fromkeys(found))


# -- auto-replies -----------------------------------------------------------------------

_OUT_OF_OFFICE = re.compile(
    r"out of (the )?office|automatic reply|auto[- ]?reply|autoresponse|away from (the )?office|"
    r"on vacation|on holiday|on leave|vacation reply|"
    r"afwezig|automatisch antwoord|niet aanwezig|buiten kantoor|met vakantie|"
    r"abwesenheit|automatische antwort|nicht im büro|au(ß|ss)er haus|im urlaub|"
    r"absence|réponse automatique|reponse automatique|absent du bureau|hors du bureau|en congé|"
    r"fuera de la oficina|respuesta automática|respuesta automatica|ausente|de vacaciones",
    re.IGNORECASE,
)


def auto_reply(msg: EmailMessage, received: date) -> Verdict | None:
    """RFC 3834 `Auto-Submitted` ≠ no, X-Autoreply, X-Autorespond, Precedence
    auto_reply|bulk|junk, or an out-of-office subject in EN, NL, DE, FR, ES."""
    reason = ""
    submitted = header(msg, "Auto-Submitted").split(";")[0].strip().lower()
    precedence = header(msg, "Precedence").strip().lower()
    if submitted and submitted != "no":
        reason = f"Auto-Submitted: {submitted}"
    elif header(msg, "X-Autoreply") or header(msg, "X-Autorespond"):
        reason = "X-Autoreply" if header(msg, "X-Autoreply") else "X-Autorespond"
    elif precedence in ("auto_reply", "bulk", "junk"):
        reason = f"Precedence: {precedence}"
    elif _OUT_OF_OFFICE.search(header(msg, "Subject")):
        reason = "out-of-office subject"
    if not reason:
        return None
    return Verdict(
        Kind.AUTO_REPLY, reason, sender=sender_of(msg), references=_thread(msg),
        return_date=return_date(text_of(msg, 5000), received),
    )  # fmt: skip


_MONTHS = {
    1: "january jan januari januar jänner janvier enero ene",
    2: "february feb februari februar février fevrier febrero",
    3: "march mar maart mrt märz maerz mär mrz mars marzo",
    4: "april apr avril abril abr",
    5: "may mei mai mayo",
    6: "june jun juni juin junio",
    7: "july jul juli juillet julio",
    8: "august aug augustus août aout agosto ago",
    9: "september sept sep septembre septiembre setiembre",
    10: "october oct oktober okt octobre octubre",
    11: "november nov novembre noviembre",
    12: "december dec dezember dez décembre decembre diciembre dic",
}
_MONTH_OF = {name: number for number, names in _MONTHS.items() for name in names.split()}
_MONTH_NAME = "|".join(sorted(map(re.escape, _MONTH_OF), key=len, reverse=True))
_DAY_MONTH = re.compile(
    rf"\b(\d{{1,2}})(?:st|nd|rd|th|er|e|\.|º)?\s+(?:de\s+)?({_MONTH_NAME})\.?"
    rf"(?:,?\s+(?:de\s+)?(\d{{4}}))?\b",
    re.IGNORECASE,
)
_MONTH_DAY = re.compile(
    rf"\b({_MONTH_NAME})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}}))?", re.IGNORECASE
)
_ISO = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_NUMERIC = re.compile(r"\b(\d{1,2})([./-])(\d{1,2})(?:\2(\d{4}|\d{2}))?(?!\d)")


# Words before a return date ("until", "back on", "tot en met", "bis", "jusqu'au", "hasta").
_RETURN_WORD = re.compile(
    r"(until|till|back|return|returning|from|terug|tot|vanaf|weer|bis|zurück|zurueck|ab|"
    r"wieder|jusqu|retour|dès|partir|hasta|regreso|vuelvo|volveré|desde)\W[^.\n]{0,40}$",
    re.IGNORECASE,
)


def return_date(text: str, received: date) -> date | None:
    """The return date an out-of-office names: after `received`, within 60 days of it.

    Of the dates found, those right after a return word ("until", "back on", "tot en
    met", "bis zum", "jusqu'au", "hasta el", …) count first; the latest of them (or of
    all dates, when none follows such a word) is the return date. Reads ISO dates,
    16/03/2026 and 16.03. (day first; month first only when the day first cannot be),
    `16 March 2026`, `March 16, 2026`, `16 maart`, `16. März`, `16 mars`, `16 de marzo`;
    a date without a year is its next occurrence.
    """
    last = received + timedelta(days=RETURN_WINDOW_DAYS)
    found = [(d, cued) for d, cued in _dates(text, received) if received < d <= last]
    cued = [d for d, is_cued in found if is_cued]
    chosen = cued or [d for d, _ in found]
    return max(chosen) if chosen else None


def _dates(text: str, received: date) -> Iterator[tuple[date, bool]]:
    """Every date in `text`, and whether a return word comes just before it."""
    for m, found in _found_dates(text, received):
        cue = _RETURN_WORD.search(text[max(0, m.start() - 60) : m.start()]) is not None
        for d in found:
            yield d, cue


def _found_dates(text: str, received: date) -> Iterator[tuple[re.Match[str], Iterable[date]]]:
    for m in _ISO.finditer(text):
        yield m, _valid(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    for m in _DAY_MONTH.finditer(text):
        month = _MONTH_OF[m.group(2).lower()]
        yield m, _with_year(m.group(3), month, int(m.group(1)), received)
    for m in _MONTH_DAY.finditer(text):
        month = _MONTH_OF[m.group(1).lower()]
        yield m, _with_year(m.group(3), month, int(m.group(2)), received)
    for m in _NUMERIC.finditer(text):
        a, sep, b, year = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
        if year is None and sep != ".":
            continue  # 3/4 without a year is too often not a date
        if year is None and text[m.end() : m.end() + 1] != ".":
            continue  # German `16.03.`: the closing dot makes it a date, not a time
        first = list(_with_year(year, b, a, received))  # day first
        yield m, first or list(_with_year(year, a, b, received))


def _with_year(year: str | None, month: int, day: int, received: date) -> Iterable[date]:
    if year is not None:
        y = int(year)
        return _valid(y + 2000 if y < 100 else y, month, day)
    this = list(_valid(received.year, month, day))
    if this and this[0] > received:
        return this
    return _valid(received.year + 1, month, day)


def _valid(year: int, month: int, day: int) -> list[date]:
    try:
        return [date(year, month, day)]
    except ValueError:
        return []


# -- replies ----------------------------------------------------------------------------


def _thread(msg: Message) -> tuple[str, ...]:
    ids = message_ids(header(msg, "In-Reply-To")) + message_ids(header(msg, "References"))
    return tuple(dict.fromkeys(ids))


def reply(msg: EmailMessage, received: date) -> Verdict | None:
    """Any other person's message: a reply when its thread or its sender is ours (decided
    against the store); the `References` chain and the From address are the evidence."""
    sender = sender_of(msg)
    if not sender:
        return None
    return Verdict(Kind.REPLY, "a person's message", sender=sender, references=_thread(msg))


RULES: tuple[Rule, ...] = (unsubscribe, dsn, non_rfc_bounce, auto_reply, reply)


def classify(msg: EmailMessage, received: date, *, skip: Collection[Kind] = ()) -> Verdict:
    """The first rule's verdict, else ignored. Never raises on a malformed message.

    `skip`: kinds whose verdicts do not count (an "unsubscribe" whose token is not ours
    is read again as whatever else it is: "Re: unsubscribe yourself" is a reply).
    """
    for rule in RULES:
        try:
            verdict = rule(msg, received)
        except Exception as exc:  # the email package's repairs have limits: skip the rule
            verdict = None
            last = f"{rule.__name__}: {type(exc).__name__}"
        else:
            last = ""
        if verdict is not None and verdict.kind not in skip:
            return verdict
    return Verdict(Kind.IGNORED, last or "no rule matched", sender=_safe_sender(msg))


def _safe_sender(msg: Message) -> str:
    try:
        return sender_of(msg)
    except Exception:
        return ""
