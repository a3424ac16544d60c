"""`plan -f jsonl`: one JSON object per (contact, step), the machine format for big lists.

This is the hot path of `bench/plan`, so per-contact work is kept to a few lookups:
- a schedule is shared by every contact in its zone, so each slot's JSON (everything
  but the contact) is encoded once per schedule and a contact's rows are one `str.join`;
- with `--render`, a step's texts depend only on the contact fields its templates read
  (`messages.step_text_reads`), so their encoded JSON is memoised on those values, and a
  contact's steps are rendered only when they miss;
- rendering is most of the work of `--render`, so chunks of contacts go to worker
  processes a few chunks ahead of the writer (bounded: the list is never held), each
  with the slot JSON it needs, and come back as finished text, taken in input order.
Schedules are still computed here, in input order (the daily limit depends on it), and
the output is byte-identical to `json.dumps(row.as_dict(), ensure_ascii=False)` per row
whatever the number of workers (tests check both).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict, deque
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from ..schedule import action_of
from ..templates import configured_render_workers
from .plan_formats import FLUSH_EVERY, Pairs, PlanRun

if TYPE_CHECKING:
    from multiprocessing.pool import AsyncResult

    from ..compiler import ContactSchedule
    from ..contacts import Contact
    from ..schedule import Slot

MAX_WORKERS = 4
# Times texts kept per zone before they are dropped (a new schedule shares the recent ones).
TIMES_KEPT = 4_096
PARTS_KEPT = 100_000  # dates or wall times whose ISO texts are kept (some 27 years of dates)
MEMO_LIMIT = 200_000  # entries over all steps (a few hundred bytes each)
PROBE = 2_000  # lookups before a step's memo is judged
MIN_HIT_RATE = 0.25  # below this a step's texts are too varied to be worth memoising
_dumps = json.JSONEncoder(ensure_ascii=False).encode

# One contact as shipped to a renderer: email, fields, timezone, row, schedule number.
Row = tuple[str, dict[str, str], str | None, int, int]


def write(run: PlanRun, pairs: Pairs, out: TextIO) -> int:
    # zone → (its current schedule, number, slot suffixes, join parts).
    encoded = _Encoded(run)
    rows = 0
    chunks: Iterator[list[tuple[Contact, ContactSchedule]]] = _chunks(pairs)
    if not run.render:
        for chunk in chunks:
            buffer = []
            for contact, schedule in chunk:
                hit = encoded.get(schedule)
                # Addresses are validated (no quotes, backslashes or control characters),
                # so they need no JSON escaping.
                buffer.append(('{"contact": "' + contact.email + '", ').join(hit[3]))
                rows += len(hit[2])
            out.write("".join(buffer))
        return rows
    for text, count in _rendered(run, chunks, encoded):
        out.write(text)
        rows += count
    return rows


def _chunks(pairs: Pairs) -> Iterator[list[tuple[Contact, ContactSchedule]]]:
    chunk: list[tuple[Contact, ContactSchedule]] = []
    for pair in pairs:
        chunk.append(pair)
        if len(chunk) == FLUSH_EVERY:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


Encoding = tuple["ContactSchedule", int, list[str], list[str]]


class _Encoded:
    """The slot JSON (everything but the contact) of each zone's current schedule.

    The compiler hands out one schedule per zone at a time: under a daily limit a zone's
    schedule is replaced each time one of its days fills (tens of thousands of times per
    100,000 contacts) and the old one is never used again. So one entry per zone is kept;
    keeping 4,096 old ones instead made the garbage collector's passes cost a third of
    the plan. The number identifies the encoding in a render chunk (never reused).
    """

    def __init__(self, run: PlanRun) -> None:
        self.run = run
        self.schedules: dict[str, Encoding] = {}
        self.count = 0
        # A row is `PlannedStep.as_dict()` less the contact. Under a daily limit nearly
        # every schedule is new, so what is fixed around its two times is encoded once:
        # the head per step, the tail per (zone, step, why moved), and the times text per
        # instant (neighbouring schedules share most of their instants).
        self.heads = [
            _dumps({"step": s.id, "day": s.day, "action": str(action_of(s))})[1:-1]
            + ', "due_local": "'
            for s in run.cadence.steps
        ]
        # zone → step index → why moved → tail (a list by index: a lookup makes no key tuple)
        steps = len(run.cadence.steps)
        self.tails: defaultdict[str, list[dict[str | None, str]]] = defaultdict(
            lambda: [{} for _ in range(steps)]
        )
        self.times: dict[str, dict[datetime, str]] = {}  # zone → due_utc → times text
        # ISO texts of dates, wall times and UTC offsets (see `_times`).
        self.dates: dict[date, str] = {}
        self.walls: dict[time, str] = {}
        self.offsets: dict[timedelta | None, str] = {}

    def get(self, schedule: ContactSchedule) -> Encoding:
        hit = self.schedules.get(schedule.zone)
        return hit if hit is not None and hit[0] is schedule else self._remember(schedule)

    def _remember(self, schedule: ContactSchedule) -> Encoding:
        zone = schedule.zone
        heads, tails = self.heads, self.tails[zone]
        times = self.times.get(zone)
        if times is None or len(times) > TIMES_KEPT:
            times = self.times[zone] = {}
        suffixes: list[str] = []
        parts = [""]  # what a contact's head joins: its rows, each ended
        # (slot i is step i; its fields unpacked, as a named tuple's cost ten times more)
        for index, slot in enumerate(schedule.slots):
            _, _, utc, local, _, _, moved = slot
            tail = tails[index].get(moved) or self._tail(zone, slot)
            pair = times.get(utc)
            if pair is None:
                pair = times[utc] = self._times(local, utc)
            suffix = heads[index] + pair + tail
            suffixes.append(suffix)
            parts.append(suffix + "}\n")
        hit = (schedule, self.count, suffixes, parts)
        self.count += 1
        self.schedules[zone] = hit
        return hit

    def _times(self, local: datetime, utc: datetime) -> str:
        """The text between a row's head and tail: its local and UTC time in ISO form.

        `datetime.isoformat` costs a microsecond or two, and under a daily limit some
        hundred thousand instants are new; they fall on a few thousand dates, at a few
        wall times and offsets, so the text is put together from those parts' texts.
        """
        if utc.tzinfo is not UTC:  # (every plan time is UTC; this keeps the format exact)
            text = utc.isoformat().replace("+00:00", "Z")
            return f'{local.isoformat()}", "due_utc": "{text}'
        dates, walls, offsets = self.dates, self.walls, self.offsets
        ld, lt, ud, ut = local.date(), local.time(), utc.date(), utc.time()
        offset = local.utcoffset()
        return (
            f"{dates.get(ld) or _remembered(dates, ld)}T{walls.get(lt) or _remembered(walls, lt)}"
            f"{offsets.get(offset) or _offset_text(offsets, local)}"
            f'", "due_utc": "{dates.get(ud) or _remembered(dates, ud)}T'
            f"{walls.get(ut) or _remembered(walls, ut)}Z"
        )

    def _tail(self, zone: str, slot: Slot) -> str:
        tail = self.tails[zone][slot.step.index][slot.moved] = (
            '", '
            + _dumps(
                {
                    "zone": zone,
                    "depends_on": [f"{d.kind}:{d.step_id}" for d in slot.depends_on],
                    "thread": slot.thread_step_id,
                    "moved": slot.moved,
                }
            )[1:-1]
        )
        return tail


def _remembered(texts: dict[Any, str], value: date | time) -> str:
    """`value.isoformat()`, kept in `texts` (bounded: emptied when it grows past a limit)."""
    if len(texts) >= PARTS_KEPT:
        texts.clear()
    text = texts[value] = value.isoformat()
    return text


def _offset_text(texts: dict[timedelta | None, str], local: datetime) -> str:
    """The UTC offset as `local.isoformat()` ends with it, kept in `texts` per offset."""
    whole = local.isoformat()
    text = texts[local.utcoffset()] = whole[len(local.replace(tzinfo=None).isoformat()) :]
    return text


def _rendered(
    run: PlanRun,
    chunks: Iterator[list[tuple[Contact, ContactSchedule]]],
    encoded: _Encoded,
) -> Iterator[tuple[str, int]]:
    """(text, rows) per chunk; the first chunk renders here, the rest in workers."""

    def job(chunk: list[tuple[Contact, ContactSchedule]]) -> tuple[list[Row], dict[int, list[str]]]:
        rows: list[Row] = []
        slots: dict[int, list[str]] = {}
        for c, schedule in chunk:
            hit = encoded.get(schedule)
            slots[hit[1]] = hit[2]
            rows.append((c.email, c.fields, c.timezone, c.row, hit[1]))  # tuples pickle fast
        return rows, slots

    first = next(chunks, None)
    if first is None:
        return
    renderer = _Renderer(run)
    yield renderer.chunk(*job(first))
    workers = _workers()
    if workers < 1:
        for chunk in chunks:
            yield renderer.chunk(*job(chunk))
        return
    import multiprocessing  # (only rendering needs it: 10 ms of every plan's start-up)

    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_start_worker, initargs=(run,)) as pool:
        pending: deque[AsyncResult[tuple[str, int]]] = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(_render_chunk, job(chunk)))
            if len(pending) >= workers * 2:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _workers() -> int:
    """Render processes: one per CPU, at most 4 (the main process reads, plans and writes).

    CADENCE_WORKERS overrides it; 0 renders in this process.
    """
    configured = configured_render_workers()
    if configured is not None:
        return configured
    return min(os.cpu_count() or 1, MAX_WORKERS)


_worker: _Renderer | None = None


def _start_worker(run: PlanRun) -> None:
    global _worker
    _worker = _Renderer(run)


def _render_chunk(rows: list[Row], slots: dict[int, list[str]]) -> tuple[str, int]:
    assert _worker is not None
    return _worker.chunk(rows, slots)


class _Renderer:
    """Finished JSONL text for chunks of contacts, with step texts memoised on what they read.

    Call and InMail titles (`Call Ava Nakamura`) vary with every name, so only their
    notes are memoised and the title is encoded per contact. A step whose texts rarely
    repeat (they read a first name *and* a company) would only fill memory, so after
    PROBE lookups such a step is no longer memoised.
    """

    def __init__(self, run: PlanRun) -> None:
        from ..messages import step_text_reads
        from ..model import StepKind

        self.run = run
        self.reads = step_text_reads(run.cadence)
        titles = {StepKind.CALL: "Call ", StepKind.INMAIL: "InMail "}
        self.steps = [(s, titles.get(s.kind)) for s in run.cadence.steps]
        self.memo: dict[tuple[str | None, ...], str] = {}
        self.judging = set(self.reads)
        self.lookups = dict.fromkeys(self.reads, 0)
        self.hits = dict.fromkeys(self.reads, 0)

    def chunk(self, rows: list[Row], slots: dict[int, list[str]]) -> tuple[str, int]:
        from ..contacts import Contact

        out: list[str] = []
        count = 0
        for email, fields, tz, row, number in rows:
            head = '{"contact": "' + email + '", '
            suffixes = slots[number]
            tails = self.tails(Contact(email, fields, tz, row))
            out.extend(head + s + t for s, t in zip(suffixes, tails, strict=True))
            count += len(suffixes)
        return "".join(out), count

    def tails(self, contact: Contact) -> list[str]:
        """`, "subject": …, "body": …}` and a newline, per step."""
        from ..messages import PREVIEW_UNSUBSCRIBE_URL, StepTexts, display_name

        fields = contact.fields
        texts: StepTexts | None = None
        out: list[str] = []
        for step, title in self.steps:
            reads = self.reads[step.id]
            key = None if reads is None else (step.id, *map(fields.get, reads))
            tail = None if key is None else self.memo.get(key)
            if key is not None and step.id in self.judging:
                self._count(step.id, tail is not None)
            if tail is None:
                if texts is None:
                    texts = StepTexts(self.run.cadence, contact, PREVIEW_UNSUBSCRIBE_URL)
                subject, body = texts.get(step)
                tail = f', "body": {_dumps(body)}}}\n'
                if title is None:
                    tail = f', "subject": {_dumps(subject)}{tail}'
                if key is not None and len(self.memo) < MEMO_LIMIT:
                    self.memo[key] = tail
            if title is not None:
                tail = f', "subject": {_dumps(title + display_name(contact))}{tail}'
            out.append(tail)
        return out

    def _count(self, step_id: str, hit: bool) -> None:
        n = self.lookups[step_id] = self.lookups[step_id] + 1
        self.hits[step_id] += hit
        if n == PROBE:
            self.judging.discard(step_id)
            if self.hits[step_id] < PROBE * MIN_HIT_RATE:
                self.reads[step_id] = None
