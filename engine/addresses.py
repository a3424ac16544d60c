"""Email addresses as they go on the wire: checked, the domain in its ASCII (IDNA) form.

One check serves the contact reader (a bad address is a bad row at launch) and the
message builder (which must never be handed an address it cannot write). A local part
may hold non-ASCII letters (RFC 6531); such an address needs SMTPUTF8, which the
transport asks the server for. The domain is always written in its ASCII form
(`bücher.example` → `xn--bcher-kva.example`), in the headers and in the envelope.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

# RFC 5322 atext (dot-atom local parts; quoted local parts are not accepted).
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# Letters, marks, numbers, symbols and punctuation outside ASCII may stand in a local part;
# separators, controls, format characters (bidi overrides), surrogates and unassigned
# code points may not.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
MAX_ADDRESS = 254  # RFC 5321 path limit, in octets
MAX_LOCAL = 64
# The common case in one pattern: an ASCII dot-atom local part and a domain of two or
# more LDH labels without a trailing dot. Whatever it matches, the full check below
# accepts with the same result (ASCII needs no IDNA or NFC step), so it only saves time.
# Possessive: no character class holds a dot or an @, so giving characters back could
# never make a match, and not trying is a fifth faster.
_PLAIN = re.compile(
    r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]++(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]++)*+)"
    r"@((?:(?!-)[A-Za-z0-9-]{1,63}+(?<!-)\.)++(?!-)[A-Za-z0-9-]{1,63}+(?<!-))"
)


class MailAddress(NamedTuple):
    """A checked address: `wire` is what headers and the envelope carry."""

    local: str
    domain: str  # ASCII (IDNA) form, lower case
    smtputf8: bool  # the local part is not ASCII

    @property
    def wire(self) -> str:
        return f"{self.local}@{self.domain}"


class AddressError(ValueError):
    """Why a text cannot be sent to as an email address."""


def plain_address(text: str) -> re.Match[str] | None:
    """The fast path's match: an address the full check accepts as it stands, or None."""
    plain = _PLAIN.fullmatch(text)
    if plain is not None and len(text) <= MAX_ADDRESS and plain.end(1) <= MAX_LOCAL:
        return plain
    return None


def parse_address(text: str) -> MailAddress:
    """The wire form of `text`, or AddressError saying what is wrong with it."""
    plain = plain_address(text)
    if plain is not None:
        return MailAddress(plain[1], plain[2].lower(), False)
    return full_check(text)


def full_check(text: str) -> MailAddress:
    """`parse_address` without its fast path (the tests hold the two equal)."""
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise AddressError("it needs exactly one @ with a local part and a domain")
    if "@" in local:
        raise AddressError("it has more than one @")
    address = MailAddress(_local_part(local), _ascii_domain(domain), not local.isascii())
    if len(address.wire.encode("utf-8")) > MAX_ADDRESS:
        raise AddressError(f"it is longer than {MAX_ADDRESS} bytes")
    return address


def address_problem(text: str) -> str | None:
    """The reason `text` is not a sendable address, or None when it is."""
    if plain_address(text) is not None:  # (each contact list row asks this)
        return None
    try:
        full_check(text)
    except AddressError as exc:
        return str(exc)
    return None


def _local_part(local: str) -> str:
    if len(local.encode("utf-8", "surrogatepass")) > MAX_LOCAL:
        raise AddressError(f"its local part is longer than {MAX_LOCAL} bytes")
    for ch in local:
        if ch.isascii():
            if ch != "." and not _ATEXT.fullmatch(ch):
                raise AddressError(f"its local part may not contain {ch!r}")
        elif unicodedata.category(ch) in _REFUSED_CATEGORIES:
            name = unicodedata.name(ch, f"U+{ord(ch):04X}")
            raise AddressError(f"its local part contains the invisible or control character {name}")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise AddressError("its local part may not start or end with a dot or hold two in a row")
    return unicodedata.normalize("NFC", local)


def _ascii_domain(domain: str) -> str:
    if domain.endswith("."):
        domain = domain[:-1]
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise AddressError(f"its domain {domain!r} has no ASCII (IDNA) form: {exc}") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2:
        raise AddressError("its domain needs a dot (name.tld)")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise AddressError(
                f"its domain label {label!r} is not letters, digits and inner hyphens (1–63)"
            )
    if len(ascii_domain) > MAX_ADDRESS - 2:
        raise AddressError("its domain is too long")
    return ascii_domain
