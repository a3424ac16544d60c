"""Outgoing messages: Message-ID, threading and unsubscribe headers, MIME bytes.

Every header is written here, byte for byte, never by re-parsing a value: rendered
contact data is text and only ever text. The rules that make header injection impossible:

- a header value first loses its control and format characters (`clean`): CR, LF, NEL,
  U+2028/U+2029 and every other control become one space; format characters such as the
  bidi overrides, and lone surrogates, are dropped (ZWJ and ZWNJ, which scripts and emoji
  need, stay);
- printable ASCII without `=?` is written as it is, folded only before a space that is
  in the text, so unfolding gives the text back; anything else (non-ASCII, text that
  looks like an RFC 2047 encoded word, a word too long to fold) is written as UTF-8
  base64 encoded words, which decode to exactly the cleaned text;
- no folded line is ever empty or blank, so a header block ends only where we end it.

A message that cannot be built (an address with no ASCII form, an over-long subject)
raises `MessageError` naming the contact and the reason; the runner fails that one step
run and goes on with the rest of the batch.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import unicodedata
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import NamedTuple
from urllib.parse import quote

from .addresses import AddressError, MailAddress, parse_address
from .errors import CadenceError
from .limits import MAX_BODY_CHARS, MAX_SUBJECT_CHARS
from .model import Cadence, Step
from .schedule import thread_of
from .transports import Envelope
from .unsubscribe import LinkForm
from .unsubscribe import mailto as unsubscribe_mailto

_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
_MAX_LINE = 78  # RFC 5322 soft limit per header line
_HARD_LINE = 998  # RFC 5322 hard limit: an address or URL that cannot fold may use it
# Printable ASCII lines of at most 900 characters: sent as 7bit, as they are.
_SEVEN_BIT_TEXT = re.compile(r"(?:[\x20-\x7e]{0,900}\n)*[\x20-\x7e]{0,900}")
# A word and the spaces before it: folding happens before a word, inside its spaces.
_TOKENS = re.compile(r" *[^ ]+")
# A display name of RFC 5322 atoms (no quoting needed).
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_MSG_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")
# 39 UTF-8 bytes are 52 base64 characters: `=?utf-8?b?…?=` is 64 long, so even after
# `Subject: ` a word fits the 78-character line, and 39 is a multiple of 3 (no padding).
_WORD_BYTES = 39
_SPACES = re.compile(" {2,}")
_JOINERS = frozenset("\u200c\u200d")
_BREAKING = frozenset({"Cc", "Zl", "Zp"})


class MessageError(CadenceError):
    """A message that cannot be built for one contact (the reason says why)."""


class Outgoing(NamedTuple):
    envelope: Envelope
    data: bytes
    subject: str
    unsubscribe: str  # the primary List-Unsubscribe link, the template's unsubscribe_url


def message_id(cadence_name: str, enrolment_uid: str, step_id: str, sender: str) -> str:
    """The deterministic Message-ID of (cadence, enrolment, step): a resend reuses it."""
    digest = hashlib.sha256(f"{cadence_name}\0{enrolment_uid}\0{step_id}".encode()).hexdigest()
    domain = sender.rpartition("@")[2]
    try:
        domain = parse_address(sender).domain
    except AddressError:
        domain = domain if domain.isascii() and _PRINTABLE_ASCII.fullmatch(domain) else ""
    return f"<{digest[:32]}@{domain or 'cadence.invalid'}>"


def unsubscribe_url(cadence: Cadence, token: str, form: LinkForm | None = None) -> str:
    """The link `{{ unsubscribe_url }}` shows: one-click https when configured (`form`,
    else read from the environment), else the token's mailto (engine.unsubscribe)."""
    return (form or LinkForm.from_env()).links(cadence.sender.email, token).primary


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
    """One line of header text, as the recipient will read it back.

    Controls (CR, LF, TAB, NUL, NEL, …) and line/paragraph separators: a run of them
    becomes one space. Format characters other than ZWJ/ZWNJ (bidi overrides, BOM, …)
    and lone surrogates: dropped. Runs of spaces: one space (mail readers collapse them in
    display names anyway); spaces at both ends: stripped.
    """
    if _PRINTABLE_ASCII.fullmatch(value):
        return _SPACES.sub(" ", value).strip(" ") if "  " in value else value.strip(" ")
    out: list[str] = []
    gap = False
    for ch in value:
        category = unicodedata.category(ch)
        if category in _BREAKING:
            gap = True
            continue
        if category == "Cs" or (category == "Cf" and ch not in _JOINERS):
            continue
        if gap:
            out.append(" ")
            gap = False
        out.append(ch)
    return _SPACES.sub(" ", "".join(out)).strip(" ")


def clean_body(text: str) -> str:
    """The body as sent: LF line ends; controls other than TAB and LF, and lone
    surrogates, dropped (a NUL or a bare CR confuses mail servers)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii():
        # (a search makes no copy: most bodies have nothing to drop)
        return _ASCII_BODY_JUNK.sub("", text) if _ASCII_BODY_JUNK.search(text) else text
    return _BODY_JUNK.sub("", text)


_ASCII_BODY_JUNK = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BODY_JUNK = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff]")


def encoded_words(text: str) -> list[str]:
    """`text` as UTF-8 base64 encoded words (RFC 2047), never splitting a character."""
    words: list[str] = []
    chunk = bytearray()
    for ch in text:
        data = ch.encode("utf-8")
        if len(chunk) + len(data) > _WORD_BYTES:
            words.append(_word(bytes(chunk)))
            chunk.clear()
        chunk += data
    if chunk or not words:
        words.append(_word(bytes(chunk)))
    return words


def _word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


def _fold(name: str, tokens: list[str], *, hard_last: bool = False) -> str | None:
    """`Name: ` and the tokens, folded before a token when a line would pass 78.

    Tokens after the first start with their own whitespace, so unfolding (removing the
    CRLFs) gives back exactly the joined tokens. None when a token does not fit a line of
    its own (the caller encodes instead); with `hard_last`, the last token (an address,
    a URL) may use a line up to the hard limit.
    """
    if tokens:
        whole = f"{name}: " + "".join(tokens)
        if len(whole) <= _MAX_LINE:  # every shorter line below fits too: nothing folds
            return whole + "\r\n"
    lines: list[str] = []
    line = f"{name}:"
    for i, token in enumerate(tokens):
        piece = token if i else " " + token
        if len(line) + len(piece) <= _MAX_LINE:
            line += piece
            continue
        if not piece.startswith(" "):
            piece = " " + piece
        last = hard_last and i == len(tokens) - 1
        if len(piece) > (_HARD_LINE if last else _MAX_LINE):
            return None
        # The first token too long for `Name: …` goes on its own line after `Name:`.
        lines.append(line)
        line = piece
    if not tokens:
        line += " "
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def unstructured(name: str, text: str) -> str:
    """A folded unstructured header (Subject) that decodes to exactly `text`."""
    if _PRINTABLE_ASCII.fullmatch(text) and "=?" not in text:
        if len(name) + len(text) <= _MAX_LINE - 2 and text[-1:] != " ":
            return f"{name}: {text}\r\n"  # one line: what `_fold` gives for its tokens
        folded = _fold(name, _TOKENS.findall(text))
        if folded is not None:
            return folded
    words = encoded_words(text)
    return _fold(name, [words[0], *(" " + w for w in words[1:])]) or ""


def _phrase_tokens(display: str) -> list[str]:
    """A display name as header tokens: atoms, a quoted string, or encoded words."""
    if "=?" not in display:
        if _ATOMS.fullmatch(display):
            tokens = _TOKENS.findall(display)
            if len(display) < _MAX_LINE - 1 or all(len(t) < _MAX_LINE - 1 for t in tokens):
                return tokens
        elif _PRINTABLE_ASCII.fullmatch(display):
            quoted = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
            if len(quoted) < _MAX_LINE - 1:
                return [quoted]
    words = encoded_words(display)
    return [words[0], *(" " + w for w in words[1:])]


def address_header(name: str, display: str, address: MailAddress) -> str:
    """`Name: display <addr>` (or the bare address without a display name), folded."""
    tokens = [*_phrase_tokens(display), f" <{address.wire}>"] if display else [address.wire]
    folded = _fold(name, tokens, hard_last=True)
    assert folded is not None  # every token fits: encoded words are short, addresses < 256
    return folded


def _checked_address(text: str, whose: str) -> MailAddress:
    try:
        return parse_address(text)
    except AddressError as exc:
        raise MessageError(f"{whose} address {text!r} cannot be written: {exc}") from None


def _date(when: datetime) -> str:
    # Equal instants in other zones compare equal: the offset is part of the key.
    return _date_text(when, when.utcoffset())


@functools.lru_cache(maxsize=16)
def _date_text(when: datetime, offset: timedelta | None) -> str:
    return format_datetime(when)  # a batch shares one date


@functools.lru_cache(maxsize=256)
def _from_header(display: str, email: str) -> tuple[str, MailAddress]:
    address = _checked_address(email, "the sender's")
    return address_header("From", clean(display), address), address


_URI_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '<>"')
_URI_AS_IS = re.compile(r"[!#-;=?-~]*")  # only _URI_SAFE: cleaning and quoting keep it


def _uri(text: str) -> str:
    """A URI as a header may carry it: cleaned, non-ASCII, space and `<>"` percent-encoded."""
    if _URI_AS_IS.fullmatch(text):
        return text
    return quote(clean(text), safe=_URI_SAFE)


def over_limits(subject: str, text: str) -> dict[str, str]:
    """What of a message is longer than is ever sent, `subject` or `body`, each with the
    reason; `subject` as `clean` gives it. The runner's check, and a form's before it."""
    problems: dict[str, str] = {}
    if len(subject) > MAX_SUBJECT_CHARS:
        problems["subject"] = (
            f"is {len(subject):,} characters; at most {MAX_SUBJECT_CHARS:,} are sent"
        )
    if len(text) > MAX_BODY_CHARS:
        problems["body"] = f"is {len(text):,} characters; at most {MAX_BODY_CHARS:,} are sent"
    return problems


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
    """The complete message bytes for one contact, or MessageError saying why not.

    The headers are exactly From, To, Subject, Date, Message-ID, In-Reply-To and
    References (a follow-up), List-Unsubscribe (and List-Unsubscribe-Post for an HTTPS
    URL), MIME-Version, Content-Type and Content-Transfer-Encoding. `unsubscribe` is the
    primary List-Unsubscribe link; beside an https one goes the mailto that carries
    `unsubscribe_token` (engine.unsubscribe).
    """
    to = _checked_address(to_email, "the contact's")
    from_line, sender = _from_header(cadence.sender.name, cadence.sender.email)
    subject = clean(subject)
    for field, reason in over_limits(subject, text).items():
        raise MessageError(f"the {field} for {to_email} {reason}")
    for mid in (msg_id, *references):
        if not _MSG_ID.fullmatch(mid):
            raise MessageError(f"Message-ID {mid!r} for {to_email} is not <id@domain> in ASCII")
    parts = [
        from_line,
        address_header("To", clean(to_name), to),
        unstructured("Subject", subject),
        f"Date: {_date(date)}\r\n",
        f"Message-ID: {msg_id}\r\n",
    ]
    if references:
        # Message-IDs are ours (hex@domain, checked above): one per folded line.
        parts.append(f"In-Reply-To: {references[-1]}\r\n")
        parts.append("References: " + "\r\n ".join(references) + "\r\n")
    unsub = [f"<{_uri(unsubscribe)}>"]
    if not unsubscribe.startswith("mailto:"):
        unsub.append(f"<{_uri(unsubscribe_mailto(cadence.sender.email, unsubscribe_token))}>")
        # RFC 8058 one-click needs an HTTPS URI to POST to.
        parts.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    listed = _url_list("List-Unsubscribe", unsub)
    if listed is None:
        raise MessageError(f"the unsubscribe URL for {to_email} is too long for a header")
    parts.append(listed)
    # Lines of printable ASCII are clean as they stand (no CR, no control): one scan.
    seven_bit = _SEVEN_BIT_TEXT.fullmatch(text) is not None
    body = text if seven_bit else clean_body(text)
    if not body.endswith("\n"):
        body += "\n"  # (a body of such lines stays one with its last line ended)
    parts.append('MIME-Version: 1.0\r\nContent-Type: text/plain; charset="utf-8"\r\n')
    if seven_bit or _SEVEN_BIT_TEXT.fullmatch(body):
        parts.append("Content-Transfer-Encoding: 7bit\r\n\r\n")
        parts.append(body.replace("\n", "\r\n"))
    else:
        encoded = binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii")
        parts.append("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
        parts.append(encoded.replace("\n", "\r\n"))
    head_text = "".join(parts)
    smtputf8 = to.smtputf8 or sender.smtputf8
    data = head_text.encode("utf-8" if smtputf8 else "ascii")
    envelope = Envelope(sender=sender.wire, recipient=to.wire, message_id=msg_id, smtputf8=smtputf8)
    return Outgoing(envelope=envelope, data=data, subject=subject, unsubscribe=unsubscribe)


def _url_list(name: str, urls: list[str]) -> str | None:
    """`Name: <a>,` then one URL per line (RFC 5322 allows lines up to 998 characters):
    a URL is never broken nor encoded, so a mail client reads back exactly what was
    written. None when a URL does not fit a line even so."""
    text = f"{name}: " + ",\r\n ".join(urls)
    if len(text) > _HARD_LINE and any(len(line) > _HARD_LINE for line in text.split("\r\n")):
        return None
    return text + "\r\n"
