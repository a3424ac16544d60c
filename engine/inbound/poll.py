"""`cadence inbox poll`: read new mail, decide whom each message concerns, act once.

For each message after the mailbox's cursor (or, when its UIDVALIDITY changed, every
message since a day before the newest one handled): classify it (`classify`), match it to
an enrolment (our Message-IDs first, then the sender's or recipient's address), and record
it under its dedupe key together with what it does — a signal, an auto-reply pause, a log
line, or nothing — in one transaction per fetched chunk, the cursor moving with it. A
message already handled (same dedupe key) is skipped, however often it is read.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from engine.errors import CadenceError
from engine.inbound.classify import Kind, Verdict, classify, header, message_ids, parse
from engine.inbound.imap import (
    CAFILE_ENV,
    PASSWORD_ENV,
    Fetched,
    Mailbox,
    connect,
    parse_mailbox,
)
from engine.inbound.pause import plan_pause
from engine.inbound.store import (
    Cursor,
    Enrolled,
    Handled,
    InboundStore,
    PausePlan,
    PlanPause,
    inbound_store,
)
from engine.runner import Versions
from engine.store import SignalKind, StepRow, Store


@dataclass(frozen=True, slots=True)
class Found:
    """One message handled by this poll, for the report."""

    uid: int
    kind: str
    email: str
    cadence: str
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "uid": self.uid,
            "kind": self.kind,
            "contact": self.email,
            "cadence": self.cadence,
            "detail": self.detail,
        }


@dataclass(slots=True)
class PollReport:
    mailbox: str
    uidvalidity: int = 0
    read: int = 0  # messages fetched
    already: int = 0  # of those, handled by an earlier poll
    rescanned: bool = False  # UIDVALIDITY changed: read again by date
    found: list[Found] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counted = Counter(f.kind for f in self.found)
        kinds = ("reply", "auto-reply", "bounce", "delayed", "unsubscribe", "ignored", "own")
        return {k: counted.get(k, 0) for k in kinds}

    def as_dict(self) -> dict[str, object]:
        return {
            "mailbox": self.mailbox,
            "uidvalidity": self.uidvalidity,
            "read": self.read,
            "already_handled": self.already,
            "rescanned": self.rescanned,
            "counts": self.counts(),
            "messages": [f.as_dict() for f in self.found if f.kind not in ("ignored", "own")],
        }


def mailbox_from_env(url: str | None) -> Mailbox:
    """`--mailbox URL`, else CADENCE_IMAP_URL; UsageError when neither is given."""
    from engine.errors import UsageError

    if url:
        return parse_mailbox(url)
    env = os.environ.get("CADENCE_IMAP_URL", "").strip()
    if not env:
        raise UsageError(
            "no mailbox: give --mailbox URL or set CADENCE_IMAP_URL",
            hint="e.g. CADENCE_IMAP_URL=imaps://sales@imap.gmail.com:993/INBOX",
        )
    return parse_mailbox(env, option="CADENCE_IMAP_URL")


def poll(
    store: Store,
    mailbox: Mailbox,
    *,
    now: datetime,
    password: str | None = None,
    cafile: str | None = None,
) -> PollReport:
    """Read the mailbox's new messages once and act on each (see the module docstring)."""
    password = os.environ.get(PASSWORD_ENV, "") if password is None else password
    cafile = os.environ.get(CAFILE_ENV) or None if cafile is None else cafile
    inbound = inbound_store(store)
    versions = Versions(store)
    report = PollReport(mailbox.url)
    with connect(mailbox, password, cafile) as conn:
        validity = conn.examine()
        report.uidvalidity = validity
        cursor = inbound.cursor(mailbox.url)
        if cursor is None:
            uids = conn.uids_after(0)
            since = 0
        elif cursor.uidvalidity == validity:
            uids = conn.uids_after(cursor.last_uid)
            since = cursor.since_utc
        else:  # renumbered: UIDs mean nothing now; dedupe keys stop double handling
            report.rescanned = True
            day = datetime.fromtimestamp(cursor.since_utc, UTC).date() - timedelta(days=1)
            uids = conn.uids_since(day)
            since = cursor.since_utc
        last = cursor.last_uid if cursor and not report.rescanned else 0
        for chunk in conn.fetch(uids):
            report.read += len(chunk)
            handled = _handle(inbound, versions, mailbox, chunk, now)
            report.already += len(chunk) - len(handled)
            last = max([last, *(m.uid for m in chunk)])
            since = max([since, *(m.received_utc for m in chunk)])
            new = inbound.record_inbox(
                mailbox.url,
                Cursor(validity, last, since),
                handled,
                int(now.timestamp()),
                versions.end_state,
                _pause_rule(versions),
            )
            report.found.extend(_found(m) for m in new)
        if not uids and (cursor is None or report.rescanned):
            inbound.record_inbox(
                mailbox.url,
                Cursor(validity, last, since),
                [],
                int(now.timestamp()),
                versions.end_state,
                _pause_rule(versions),
            )
    return report


def _pause_rule(versions: Versions) -> PlanPause:
    def rule(message: Handled, planned: list[StepRow]) -> PausePlan:
        assert message.pause is not None
        return plan_pause(versions.get(message.pause.cadence_hash), message, planned)

    return rule


def _found(m: Handled) -> Found:
    cadence = m.cadence_name or (m.pause.cadence_name if m.pause else "")
    return Found(m.uid, m.kind, m.email or "", cadence, m.detail)


def dedupe_key(data: bytes, message_id: str) -> str:
    """The Message-ID when the message has one, else a hash of its bytes."""
    if message_id:
        return "mid:" + message_id
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class _Read:
    fetched: Fetched
    key: str
    message_id: str
    verdict: Verdict


def _handle(
    inbound: InboundStore,
    versions: Versions,
    mailbox: Mailbox,
    chunk: list[Fetched],
    now: datetime,
) -> list[Handled]:
    """Classify and match a chunk; messages handled before are left out."""
    read: list[_Read] = []
    for f in chunk:
        msg = parse(f.data)
        ids = message_ids(header(msg, "Message-ID"))
        message_id = ids[0] if ids else ""
        received = f.received_utc or int(now.timestamp())
        day = datetime.fromtimestamp(received, UTC).date()
        verdict = classify(msg, day)
        if verdict.kind is Kind.UNSUBSCRIBE and inbound.address_of_token(verdict.token) is None:
            verdict = classify(msg, day, skip={Kind.UNSUBSCRIBE})
        read.append(_Read(f, dedupe_key(f.data, message_id), message_id, verdict))
    done = inbound.handled({r.key for r in read})
    read = [r for r in read if r.key not in done]
    owners = inbound.by_message_id(
        {
            i
            for r in read
            for i in (r.message_id, *r.verdict.references, *r.verdict.original_ids)
            if i
        }
    )
    people = inbound.by_address(
        {a for r in read for a in (r.verdict.sender, *r.verdict.recipients) if a}
    )
    out: list[Handled] = []
    seen: set[str] = set()
    for r in read:
        if r.key in seen:  # the same message twice in one chunk (a copy in the folder)
            continue
        seen.add(r.key)
        received = r.fetched.received_utc or int(now.timestamp())
        base = Handled(
            dedupe_key=r.key,
            uid=r.fetched.uid,
            kind=Kind.IGNORED,
            detail=r.verdict.reason,
            source=f"{mailbox.url}#uid={r.fetched.uid}",
            received_utc=received,
            email=r.verdict.sender or None,
        )
        out.append(_match(base, r, owners, people, inbound, versions))
    return out


def _match(
    base: Handled,
    r: _Read,
    owners: dict[str, Enrolled],
    people: dict[str, list[Enrolled]],
    inbound: InboundStore,
    versions: Versions,
) -> Handled:
    from dataclasses import replace

    v = r.verdict
    if r.message_id and r.message_id in owners:
        return replace(base, kind="own", detail="our own sent copy")
    if v.kind is Kind.UNSUBSCRIBE:
        email = inbound.address_of_token(v.token)
        assert email is not None  # `_handle` read any other token's message again
        return replace(
            base, kind=Kind.UNSUBSCRIBE, email=email, signal=SignalKind.UNSUBSCRIBE,
            detail=f"{v.reason} from {v.sender or 'unknown sender'}",
        )  # fmt: skip
    if v.kind in (Kind.BOUNCE, Kind.DELAYED):
        bounced = _bounced(v, owners, people)
        if bounced is None:
            return replace(base, detail=f"{v.reason} for an address we never emailed")
        signal = SignalKind.BOUNCE if v.kind is Kind.BOUNCE else None
        return replace(base, kind=v.kind, email=bounced, signal=signal, detail=v.reason)
    enrolment = _thread_owner(v.references, owners) or _sender_enrolment(
        people.get(v.sender, []), base.received_utc
    )
    if enrolment is None:
        return replace(base, detail=f"{v.reason}: not from a contact we emailed")
    if v.kind is Kind.AUTO_REPLY:
        cadence = versions.get(enrolment.cadence_hash)
        detail = f"auto-reply ({v.reason})"
        if cadence.settings.on_auto_reply == "ignore" or enrolment.state != "active":
            why = "on_auto_reply: ignore" if enrolment.state == "active" else enrolment.state
            return replace(
                base, kind=Kind.AUTO_REPLY, email=enrolment.email, detail=f"{detail}, {why}",
                cadence_name=enrolment.cadence_name,
            )  # fmt: skip
        return replace(
            base, kind=Kind.AUTO_REPLY, email=enrolment.email, pause=enrolment,
            return_date=v.return_date, detail=detail,
        )  # fmt: skip
    by_thread = _thread_owner(v.references, owners) is not None
    cadences = {e.cadence_name for e in people.get(v.sender, []) if e.first_sent_utc is not None}
    cadence_name = enrolment.cadence_name if by_thread or len(cadences) <= 1 else None
    how = "in the thread of our email" if by_thread else "from the contact's address"
    return replace(
        base, kind=Kind.REPLY, email=enrolment.email, signal=SignalKind.REPLY,
        cadence_name=cadence_name, detail=f"reply {how}",
    )  # fmt: skip


def _thread_owner(references: Iterable[str], owners: dict[str, Enrolled]) -> Enrolled | None:
    for message_id in reversed(tuple(references)):  # the nearest in the thread first
        if message_id in owners:
            return owners[message_id]
    return None


def _sender_enrolment(enrolments: list[Enrolled], received_utc: int) -> Enrolled | None:
    """The contact's latest enrolment we had emailed before the message came."""
    emailed = [
        e for e in enrolments if e.first_sent_utc is not None and e.first_sent_utc <= received_utc
    ]
    active = [e for e in emailed if e.state == "active"]
    chosen = active or emailed
    return chosen[-1] if chosen else None


def _bounced(
    v: Verdict, owners: dict[str, Enrolled], people: dict[str, list[Enrolled]]
) -> str | None:
    """The address a bounce is for: by the returned Message-ID, else Final-Recipient."""
    for message_id in v.original_ids:
        if message_id in owners:
            return owners[message_id].email
    for recipient in v.recipients:
        if any(e.first_sent_utc is not None for e in people.get(recipient, [])):
            return recipient
    return None


def poll_every(
    expression: str,
    clock: Callable[[], datetime],
    once: Callable[[datetime], None],
    on_error: Callable[[CadenceError], None],
) -> None:
    """Call `once(now)` at every fire time of a 5-field cron expression until SIGINT or
    SIGTERM (which let the poll in hand finish: its chunk is one transaction anyway)."""
    import signal
    import time

    from croniter import croniter

    stop = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        schedule = croniter(expression, clock())
        while not stop:
            fire: datetime = schedule.get_next(datetime)
            while not stop and fire.timestamp() > clock().timestamp():
                time.sleep(min(fire.timestamp() - clock().timestamp(), 0.2))
            if stop:
                break
            try:
                once(clock())
            except CadenceError as exc:  # e.g. the server is down: try at the next fire time
                on_error(exc)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
