"""`cadence inbox poll`: read new mail, decide whom each message concerns, act once.

For each message after the mailbox's cursor (or, when its UIDVALIDITY changed, every
message received since the day before the store's first launch: nothing older can concern
an enrolment): classify it (`classify`), match it to an enrolment (our Message-IDs
first, then the sender's or recipient's address), and act — a signal through
`engine.signals.apply_signal`, an auto-reply pause through the enrolments' pause
machinery, a log line, or nothing — then remember its dedupe key; the cursor moves after
each fetched chunk, whose acts, keys and cursor commit together (`Repository.batch`).
Acting comes before remembering and every act is idempotent, so a crash in between
repeats an act and never loses one; a message remembered before (the same dedupe key)
is skipped, however often it is read. Only the store contract is used
(`engine.store.Repository`), so any store that implements it works.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from ..cron import CronSchedule
from ..errors import CadenceError
from ..run.pinned import Versions
from ..signals import apply_signal
from ..store import (
    Cursor,
    EnrolmentState,
    EventRecord,
    Repository,
    Signal,
    SignalKind,
)
from ..unsubscribe import address_of_token
from .classify import Kind, Verdict, classify, header, message_ids, parse
from .imap import URL_ENV, Account, Fetched, Mailbox, account, connect, parse_mailbox
from .pause import pause_until


@dataclass(frozen=True, slots=True)
class Enrolled:
    """An enrolment an inbound message may concern."""

    enrolment_id: int
    cadence_name: str
    cadence_hash: str
    email: str
    state: EnrolmentState
    zone: str  # the contact's scheduling zone
    first_sent_utc: int | None  # when our first email to the contact went out


@dataclass(frozen=True, slots=True)
class Handled:
    """What one message turned out to be, and what it does."""

    dedupe_key: str
    uid: int
    kind: Kind
    detail: str
    source: str  # "mailbox <url> uid <n>"
    received_utc: int
    email: str | None = None  # the contact it concerns
    signal: SignalKind | None = None  # recorded as this signal
    cadence_name: str | None = None  # a reply on one cadence's thread; None: every cadence
    pause: Enrolled | None = None  # an auto-reply pausing this enrolment
    return_date: date | None = None  # the return date the auto-reply names


@dataclass(frozen=True, slots=True)
class Found:
    """One message handled by this poll, for the report."""

    uid: int
    kind: Kind
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
    rescanned: bool = False  # UIDVALIDITY changed: read again by date (`_rescan_since`)
    found: list[Found] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counted = Counter(f.kind for f in self.found)
        return {k.value: counted.get(k, 0) for k in Kind}

    def as_dict(self) -> dict[str, object]:
        return {
            "mailbox": self.mailbox,
            "uidvalidity": self.uidvalidity,
            "read": self.read,
            "already_handled": self.already,
            "rescanned": self.rescanned,
            "counts": self.counts(),
            "messages": [f.as_dict() for f in self.found if f.kind not in QUIET_KINDS],
        }


QUIET_KINDS = (Kind.IGNORED, Kind.OWN)  # kinds a poll does nothing about, left out of its news


def mailbox_from_env(url: str | None) -> Account:
    """The mailbox to poll and what logging in to it takes, every setting checked now, so
    a poller that runs for days fails at its start, not at each poll: `--mailbox URL`, else
    CADENCE_IMAP_URL; the password CADENCE_IMAP_PASSWORD; the CA bundle CADENCE_IMAP_CAFILE
    (optional). UsageError naming what is missing or wrong; nothing is connected to."""
    from ..errors import UsageError

    if url:
        return account(parse_mailbox(url))
    env = os.environ.get(URL_ENV, "").strip()
    if not env:
        raise UsageError(
            f"no mailbox: give --mailbox URL or set {URL_ENV}",
            hint=f"e.g. {URL_ENV}=imaps://sales@imap.gmail.com:993/INBOX",
        )
    return account(parse_mailbox(env, option=URL_ENV))


def poll(store: Repository, mailbox: Mailbox, *, now: datetime) -> PollReport:
    """Read the mailbox's new messages once and act on each (see the module docstring).

    `mailbox` is what `mailbox_from_env` returned (its settings checked once, at start); a
    bare `Mailbox` (`parse_mailbox`) has its settings read from the environment now."""
    box = mailbox if isinstance(mailbox, Account) else account(mailbox)
    versions = Versions(store)
    report = PollReport(box.url)
    stamp = int(now.timestamp())
    with connect(box) as conn:
        validity = conn.examine()
        report.uidvalidity = validity
        cursor = store.cursor(box.url)
        # Renumbered (UIDVALIDITY changed): UIDs mean nothing now, so the messages
        # received since the store's first launch are read again (older ones cannot
        # concern an enrolment); the dedupe keys stop double handling. `top` is taken
        # before the search: a message that arrives after it has a higher UID.
        report.rescanned = cursor is not None and cursor.uidvalidity != validity
        last = cursor.last_uid if cursor is not None and not report.rescanned else 0
        top = 0
        if report.rescanned:
            top = conn.highest_uid()
            since = _rescan_since(store)
            uids = conn.uids_since(since) if since is not None else []
        else:
            uids = conn.uids_after(last)
        for chunk in conn.fetch(uids):
            report.read += len(chunk)
            handled = _handle(store, versions, box, chunk, now)
            last = max([last, *(m.uid for m in chunk)])
            # One commit for the chunk's acts, keys and cursor (a commit per act made
            # the poll disk-bound); a crash before it keeps none of them, so the chunk
            # is read and acted on again, idempotently.
            with store.batch():
                for m in handled:
                    if _act(store, versions, m, stamp):
                        report.found.append(_found(m))
                    else:
                        report.already += 1
                store.set_cursor(box.url, Cursor(validity, last))
            report.already += len(chunk) - len(handled)
        # After a rescan the older messages it skipped go behind the cursor too, once
        # every chunk is done (a crash before this reads them next time, harmlessly).
        if report.rescanned or (cursor is None and not uids):
            store.set_cursor(box.url, Cursor(validity, max(last, top)))
    return report


def _rescan_since(store: Repository) -> date | None:
    """The first day a rescan reads: the day before the store's first launch (a day of
    margin for the server's calendar and clock); None when nothing was ever launched (no
    message can concern an enrolment)."""
    first = min((e.launched_utc for e in store.enrolments()), default=None)
    if first is None:
        return None
    return datetime.fromtimestamp(first, UTC).date() - timedelta(days=1)


def _act(store: Repository, versions: Versions, m: Handled, now: int) -> bool:
    """Do what `m` does, then remember it; False when another poll remembered it first.

    A signal or a pause is applied before the key is remembered (both are idempotent: a
    repeat after a crash changes nothing twice); a message that only logs is remembered
    first, so a race between two pollers logs it once; one that does nothing (ignored,
    our own copy) is not remembered: reading it again does nothing again.
    """
    acts = (m.signal is not None and m.email is not None) or m.pause is not None
    if m.kind in QUIET_KINDS:
        # Nothing to do, and nothing a second reading would do: not remembered, so the
        # dedupe keys stay those of messages that mattered (a commit fewer per message).
        return True
    if not acts:
        if not store.remember_inbound(m.dedupe_key, m.source, now):
            return False
        if m.kind == Kind.AUTO_REPLY and m.email is not None:
            store.record_signal(_signal(SignalKind.AUTO_REPLY, m, now))
        elif m.kind == Kind.DELAYED and m.email is not None:
            store.add_event(EventRecord(now, "delayed", m.email, m.detail, source=m.source))
        return True
    if m.signal is not None and m.email is not None:
        apply_signal(store, versions, _signal(m.signal, m, now))
    elif m.pause is not None:
        _pause(store, versions, m, now)
    return store.remember_inbound(m.dedupe_key, m.source, now)


def _signal(kind: SignalKind, m: Handled, now: int) -> Signal:
    assert m.email is not None
    return Signal(kind, m.email, m.cadence_name, now, m.source, m.detail)


def _pause(store: Repository, versions: Versions, m: Handled, now: int) -> None:
    """An auto-reply: logged as the signal it is, and the enrolment paused until the day
    the rule gives (`engine.inbound.pause`); the runner resumes it then."""
    enrolment = m.pause
    assert enrolment is not None and m.email is not None
    store.record_signal(_signal(SignalKind.AUTO_REPLY, m, now))
    cadence = versions.get(enrolment.cadence_hash)
    until = pause_until(cadence, enrolment.zone, m.received_utc, m.return_date)
    if until is None or until.until_utc <= now:
        return
    reason = f"{m.detail}: paused until {until.resume.isoformat()} ({until.why})"
    store.pause(enrolment.enrolment_id, now, until.until_utc, reason, source=m.source)


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
    received_utc: int  # INTERNALDATE, else the poll's time


def _matching(
    store: Repository, message_ids: Iterable[str], addresses: Iterable[str]
) -> tuple[dict[str, Enrolled], dict[str, list[Enrolled]]]:
    """(owners, people): of these Message-IDs, those of our step runs with their
    enrolments; the enrolments of these addresses and of the owners' contacts, read from
    the store in one go."""
    rows = {i: row for i in set(message_ids) if (row := store.step_run_by_message_id(i))}
    people = _enrolled(store, {*addresses, *(row.email for row in rows.values())})
    by_id = {e.enrolment_id: e for found in people.values() for e in found}
    owners = {i: by_id[row.enrolment_id] for i, row in rows.items() if row.enrolment_id in by_id}
    return owners, people


def _enrolled(store: Repository, emails: Iterable[str]) -> dict[str, list[Enrolled]]:
    """Enrolments of these (lower-cased) addresses, oldest first."""
    found = {e: store.enrolments(email=e) for e in set(emails)}
    steps = store.step_runs_of(r.id for records in found.values() for r in records)
    out: dict[str, list[Enrolled]] = {}
    for email, records in found.items():
        for r in records:
            own = steps.get(r.id, [])
            sent = [s.sent_utc for s in own if s.sent_utc is not None]
            zone = own[0].zone if own else "UTC"
            first = min(sent, default=None)
            enrolled = Enrolled(r.id, r.cadence_name, r.cadence_hash, r.email, r.state, zone, first)
            out.setdefault(email, []).append(enrolled)
    return out


def _handle(
    store: Repository, versions: Versions, mailbox: Mailbox, chunk: list[Fetched], now: datetime
) -> list[Handled]:
    """Classify and match a chunk; messages handled before are left out."""
    read: list[_Read] = []
    tokens: dict[str, str | None] = {}
    stamp = int(now.timestamp())
    for f in chunk:
        msg = parse(f.data)
        ids = message_ids(header(msg, "Message-ID"))
        message_id = ids[0] if ids else ""
        received = f.received_utc or stamp
        day = datetime.fromtimestamp(received, UTC).date()
        verdict = classify(msg, day)
        if verdict.kind is Kind.UNSUBSCRIBE:
            if verdict.token not in tokens:
                tokens[verdict.token] = address_of_token(store, verdict.token)
            if tokens[verdict.token] is None:  # not our token: read as what else it is
                verdict = classify(msg, day, skip={Kind.UNSUBSCRIBE})
        read.append(_Read(f, dedupe_key(f.data, message_id), message_id, verdict, received))
    done = store.seen_inbound(r.key for r in read)
    read = [r for r in read if r.key not in done]
    owners, people = _matching(
        store,
        (
            i
            for r in read
            for i in (r.message_id, *r.verdict.references, *r.verdict.original_ids)
            if i
        ),
        (a for r in read for a in (r.verdict.sender, *r.verdict.recipients) if a),
    )
    out: list[Handled] = []
    seen: set[str] = set()
    for r in read:
        if r.key in seen:  # the same message twice in one chunk (a copy in the folder)
            continue
        seen.add(r.key)
        base = Handled(
            dedupe_key=r.key,
            uid=r.fetched.uid,
            kind=Kind.IGNORED,
            detail=r.verdict.reason,
            source=f"mailbox {mailbox.url} uid {r.fetched.uid}",
            received_utc=r.received_utc,
            email=r.verdict.sender or None,
        )
        out.append(_match(base, r, owners, people, tokens, versions))
    return out


def _match(
    base: Handled,
    r: _Read,
    owners: dict[str, Enrolled],
    people: dict[str, list[Enrolled]],
    tokens: dict[str, str | None],
    versions: Versions,
) -> Handled:
    v = r.verdict
    if r.message_id and r.message_id in owners:
        return replace(base, kind=Kind.OWN, detail="our own sent copy")
    if v.kind is Kind.UNSUBSCRIBE:
        email = tokens[v.token]
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
    thread = _thread_owner(v.references, owners)
    enrolment = thread or _sender_enrolment(people.get(v.sender, []), base.received_utc)
    if enrolment is None:
        return replace(base, detail=f"{v.reason}: not from a contact we emailed")
    if v.kind is Kind.AUTO_REPLY:
        cadence = versions.get(enrolment.cadence_hash)
        detail = f"auto-reply ({v.reason})"
        if (
            cadence.settings.on_auto_reply == "ignore"
            or enrolment.state is not EnrolmentState.ACTIVE
        ):
            active = enrolment.state is EnrolmentState.ACTIVE
            why = "on_auto_reply: ignore" if active else str(enrolment.state)
            return replace(
                base, kind=Kind.AUTO_REPLY, email=enrolment.email, detail=f"{detail}, {why}",
                cadence_name=enrolment.cadence_name,
            )  # fmt: skip
        return replace(
            base, kind=Kind.AUTO_REPLY, email=enrolment.email, pause=enrolment,
            return_date=v.return_date, detail=detail,
        )  # fmt: skip
    by_thread = thread is not None
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
    active = [e for e in emailed if e.state is EnrolmentState.ACTIVE]
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
    schedule: CronSchedule,
    clock: Callable[[], datetime],
    once: Callable[[datetime], None],
    on_error: Callable[[CadenceError], None],
) -> None:
    """Call `once(now)` at once, then at every fire time of a 5-field cron expression (the
    loop of `run --every`, `engine.runner.every`) until SIGINT or SIGTERM, which let the
    poll in hand finish (what it did is remembered message by message, so a stop never
    loses one)."""
    from ..runner import every, on_stop_signals

    stop = False

    def request_stop() -> None:
        nonlocal stop
        stop = True

    with on_stop_signals(request_stop):
        every(schedule, clock, lambda: stop, once, on_error)
