"""One IMAP mailbox, read-only: the standard library's `imaplib`.

Read-only three times over: the folder is opened with EXAMINE (a read-only SELECT, where
the server itself refuses to change flags), messages are fetched with `BODY.PEEK[]` (which
never sets `\\Seen`), and no STORE, COPY, MOVE or EXPUNGE is ever sent.

`imaps://user@host:993/INBOX` is TLS from the first byte; `imap://user@host:143/INBOX`
upgrades with STARTTLS and is refused when the server does not offer it, so a password is
never sent in the clear. The password only ever comes from `CADENCE_IMAP_PASSWORD` and is
masked out of every message this module produces. `account` checks what logging in takes
(the password is set, the CA bundle loads) once, before any connection: a poller that
runs for days fails at its start on a bad setting, not at every poll.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

from ..errors import InputError, UsageError

PASSWORD_ENV = "CADENCE_IMAP_PASSWORD"
CAFILE_ENV = "CADENCE_IMAP_CAFILE"
URL_ENV = "CADENCE_IMAP_URL"  # the mailbox `cadence run`, `worker` and `inbox poll` read
FETCH_CHUNK = 250  # messages per UID FETCH: few round trips, bounded memory
# Bytes read of each message: headers, the text and a bounce's report all come first; a
# 30 MB attachment is never downloaded (a chunk holds at most 250 × 256 KiB).
PEEK_BYTES = 256 * 1024
TIMEOUT = 60.0
# A server greets (or starts TLS) at once: one silent this long is waiting for something
# else, most often a TLS port named imap://, where it waits for our TLS hello.
GREETING_TIMEOUT = 10.0
_URL_HINT = "e.g. imaps://sales@imap.example.com:993/INBOX or imap://sales@host:143/INBOX"
_UID = re.compile(rb"\bUID (\d+)")
# An IMAP date's month (RFC 3501 date-month): English, whatever the locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A parsed mailbox URL (never holds a password)."""

    tls: bool  # imaps (TLS) or imap (STARTTLS)
    user: str
    host: str
    port: int
    folder: str

    @property
    def url(self) -> str:
        """The URL as shown and as the cursor's key."""
        scheme = "imaps" if self.tls else "imap"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.folder}"


def parse_mailbox(url: str, *, option: str = "--mailbox") -> Mailbox:
    """A mailbox URL; UsageError naming what is wrong (a password in it is refused)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"{option}: not a mailbox URL ({exc})", hint=_URL_HINT) from None
    if parts.scheme not in ("imap", "imaps"):
        raise UsageError(
            f"{option} {_mask_url(url)!r}: the scheme must be imaps:// (TLS) or imap:// (STARTTLS)",
            hint=_URL_HINT,
        )
    if parts.password is not None:
        raise UsageError(
            f"{option} {_mask_url(url)!r}: a password does not belong in the URL",
            hint=f"set {PASSWORD_ENV} in the environment instead",
        )
    if not parts.username or not parts.hostname:
        raise UsageError(f"{option} {url!r}: give the user and the host", hint=_URL_HINT)
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    tls = parts.scheme == "imaps"
    return Mailbox(
        tls, unquote(parts.username), parts.hostname, port or (993 if tls else 143), folder
    )


def _mask_url(url: str) -> str:
    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:****@", url)


@dataclass(frozen=True, slots=True)
class Account(Mailbox):
    """A mailbox with what logging in to it takes, checked once (`account`): the password
    (never shown: left out of repr) and the TLS context, ready for every connection."""

    password: str = field(repr=False, compare=False)
    context: ssl.SSLContext = field(repr=False, compare=False)


def account(mailbox: Mailbox, environ: Mapping[str, str] = os.environ) -> Account:
    """`mailbox` with CADENCE_IMAP_PASSWORD and a TLS context trusting CADENCE_IMAP_CAFILE
    (else the system's CAs); UsageError naming the variable when one is missing or bad."""
    password = environ.get(PASSWORD_ENV, "")
    if not password:
        raise UsageError(
            f"mailbox {mailbox.url}: {PASSWORD_ENV} is not set",
            hint=f"put the mailbox's (app) password in {PASSWORD_ENV} in the environment",
        )
    context = tls_context(environ.get(CAFILE_ENV, "").strip() or None)
    m = mailbox
    return Account(m.tls, m.user, m.host, m.port, m.folder, password=password, context=context)


def tls_context(cafile: str | None) -> ssl.SSLContext:
    """Certificate and host name checked; `cafile` (CADENCE_IMAP_CAFILE) for a private CA."""
    if cafile and not Path(cafile).is_file():
        raise UsageError(f"{CAFILE_ENV}={cafile!r}: no such file", hint="name a PEM CA bundle")
    try:
        return ssl.create_default_context(cafile=cafile or None)
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(f"{CAFILE_ENV}={cafile!r} is not a CA bundle ({exc})") from None


@dataclass(frozen=True, slots=True)
class Fetched:
    uid: int
    received_utc: int  # INTERNALDATE
    data: bytes


class MailboxError(InputError):
    """The server refused or failed (connection, login, folder)."""


class LoginRefused(MailboxError):
    """The server refused the user and password: configuration, not an outage (exit 2, as
    an SMTP server's 535 is)."""

    exit_code = 2


def _other_scheme(mailbox: Mailbox, exc: BaseException) -> bool:
    """Whether a failure to connect looks like the other scheme's port: TLS met a plain
    text greeting (imaps:// on a STARTTLS port), or no greeting came (imap:// on a TLS
    port, which waits for our TLS hello)."""
    if mailbox.tls:
        return isinstance(exc, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(exc)
    return isinstance(exc, TimeoutError)


class Connection:
    """An open, authenticated, read-only view of one folder."""

    def __init__(self, mailbox: Account) -> None:
        self.mailbox = mailbox
        self._password = mailbox.password
        self._imap: imaplib.IMAP4 | None = None
        self._context = mailbox.context

    def _error(
        self, what: str, exc: BaseException, kind: type[MailboxError] = MailboxError
    ) -> MailboxError:
        text = str(exc)
        if self._password:
            text = text.replace(self._password, "****")
        hint = None
        m = self.mailbox
        if isinstance(exc, ssl.SSLCertVerificationError):
            hint = f"the server's certificate is not trusted; for a private CA set {CAFILE_ENV}"
        elif what == "cannot connect" and _other_scheme(m, exc):
            other = Mailbox(not m.tls, m.user, m.host, m.port, m.folder)
            expects = "imaps:// (TLS from the first byte)" if other.tls else "imap:// (STARTTLS)"
            hint = f"port {m.port} may expect {expects}: try {other.url}"
        elif "authenticat" in text.lower() or "login" in what:
            hint = (
                f"check the user in the URL and {PASSWORD_ENV} "
                "(Gmail, Microsoft 365: an app password)"
            )
        return kind(f"mailbox {self.mailbox.url}: {what}: {text}", hint=hint)

    def __enter__(self) -> Connection:
        m = self.mailbox
        try:
            if m.tls:
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    m.host, m.port, ssl_context=self._context, timeout=GREETING_TIMEOUT
                )
            else:
                imap = imaplib.IMAP4(m.host, m.port, timeout=GREETING_TIMEOUT)
            imap.sock.settimeout(TIMEOUT)  # greeted: the usual patience from here on
            if not m.tls:
                if "STARTTLS" not in imap.capabilities:
                    imap.shutdown()
                    raise UsageError(
                        f"mailbox {m.url}: the server does not offer STARTTLS; refusing to "
                        "send the password in the clear",
                        hint=f"use imaps://{m.user}@{m.host}:993/{m.folder} if it offers TLS",
                    )
                imap.starttls(ssl_context=self._context)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise self._error("cannot connect", exc) from None
        self._imap = imap
        try:
            imap.login(m.user, self._password)
        except imaplib.IMAP4.error as exc:  # the server said NO
            self.close()
            raise self._error("login failed", exc, LoginRefused) from None
        except OSError as exc:  # the connection broke
            self.close()
            raise self._error("login failed", exc) from None
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        imap, self._imap = self._imap, None
        if imap is None:
            return
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            imap.logout()

    def _client(self) -> imaplib.IMAP4:
        assert self._imap is not None, "use the connection as a context manager"
        return self._imap

    def examine(self) -> int:
        """Open the folder read-only; its UIDVALIDITY."""
        imap = self._client()
        try:
            typ, data = imap.select(_quoted(self.mailbox.folder), readonly=True)
            if typ != "OK":
                raise imaplib.IMAP4.error(_text(data))
            _, validity = imap.response("UIDVALIDITY")
            return int(validity[0]) if validity and validity[0] else 0
        except (OSError, imaplib.IMAP4.error, ValueError) as exc:
            raise self._error(f"cannot open folder {self.mailbox.folder!r}", exc) from None

    def uids_after(self, last_uid: int) -> list[int]:
        # `N:*` always matches the highest UID, even below N: filter.
        return [u for u in self._search("UID", f"{last_uid + 1}:*") if u > last_uid]

    def uids_since(self, day: date) -> list[int]:
        """UIDs of the messages received (INTERNALDATE) on `day` or later, by the server's
        calendar (SEARCH SINCE ignores the time and the zone: give a day of margin)."""
        return self._search("SINCE", f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}")

    def highest_uid(self) -> int:
        """The folder's highest UID now, 0 when it is empty (`*` is the highest message)."""
        return max(self._search("UID", "*"), default=0)

    def _search(self, *criteria: str) -> list[int]:
        try:
            typ, data = self._client().uid("SEARCH", *criteria)
            if typ != "OK":
                raise imaplib.IMAP4.error(_text(data))
        except (OSError, imaplib.IMAP4.error) as exc:
            raise self._error("search failed", exc) from None
        return sorted(int(u) for chunk in data if chunk for u in chunk.split())

    def fetch(self, uids: Sequence[int]) -> Iterator[list[Fetched]]:
        """The messages (their first PEEK_BYTES), in chunks, never setting \\Seen."""
        for start in range(0, len(uids), FETCH_CHUNK):
            chunk = uids[start : start + FETCH_CHUNK]
            try:
                typ, data = self._client().uid(
                    "FETCH",
                    ",".join(map(str, chunk)),
                    f"(UID INTERNALDATE BODY.PEEK[]<0.{PEEK_BYTES}>)",
                )
                if typ != "OK":
                    raise imaplib.IMAP4.error(_text(data))
            except (OSError, imaplib.IMAP4.error) as exc:
                raise self._error("fetch failed", exc) from None
            yield _fetched(data)


def _fetched(data: list[object]) -> list[Fetched]:
    out: list[Fetched] = []
    for item in data:
        if not isinstance(item, tuple) or len(item) < 2:
            continue
        head, body = item[0], item[1]
        if not isinstance(head, bytes) or not isinstance(body, bytes):
            continue
        uid = _UID.search(head)
        if uid is None:
            continue
        when = imaplib.Internaldate2tuple(head)  # local time: mktime makes it an instant
        received = int(time.mktime(when)) if when is not None else 0
        out.append(Fetched(int(uid.group(1)), received, body))
    return out


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(data: object) -> str:
    if isinstance(data, list) and data and isinstance(data[0], bytes):
        return data[0].decode(errors="replace")
    return str(data)


def connect(mailbox: Account) -> Connection:
    return Connection(mailbox)
