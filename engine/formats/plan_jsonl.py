"""`plan -f jsonl`: one JSON object per (contact, step), the machine format for big lists.

This is the hot path of `bench/plan`, so per-contact work is kept to a few lookups:
- a schedule is shared by every contact in its zone, so each slot's JSON (everything
  but the contact) is encoded once per schedule and a contact's rows are one `str.join`;
- with `--render`, a step's texts depend only on the contact fields its templates read
  (`messages.step_text_reads`), so their encoded JSON is memoised on those values and a
  contact is rendered only when one of its steps misses.
The output is byte-identical to `json.dumps(row.as_dict(), ensure_ascii=False)` per row
(a test checks).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from multiprocessing.pool import AsyncResult
from typing import TYPE_CHECKING, TextIO

from engine.formats.plan_formats import FLUSH_EVERY, Pairs, PlanRun

if TYPE_CHECKING:
    from engine.compiler import ContactSchedule
    from engine.contacts import Contact

MEMO_LIMIT = 200_000  # entries over all steps (a few hundred bytes each)
PROBE = 2_000  # lookups before a step's memo is judged
MIN_HIT_RATE = 0.25  # below this a step's texts are too varied to be worth memoising
_dumps = json.JSONEncoder(ensure_ascii=False).encode


def write(run: PlanRun, pairs: Pairs, out: TextIO) -> int:
    # id(schedule) → (schedule, slot suffixes, join parts); holding the schedule keeps
    # its id from being reused while it is cached.
    encoded: dict[int, tuple[ContactSchedule, list[str], list[str]]] = {}
    rows = 0
    for chunk, tails in _chunks_with_texts(run, pairs):
        buffer: list[str] = []
        for i, (contact, schedule) in enumerate(chunk):
            hit = encoded.get(id(schedule))
            if hit is None:
                hit = encoded[id(schedule)] = _encode(run, schedule)
            # Addresses are validated (no quotes, backslashes or control characters), so
            # they need no JSON escaping.
            head = '{"contact": "' + contact.email + '", '
            if tails is None:
                buffer.append(head.join(hit[2]))
            else:
                buffer.extend(head + s + t for s, t in zip(hit[1], tails[i], strict=True))
            rows += len(hit[1])
        out.write("".join(buffer))
    return rows


Chunk = list[tuple["Contact", "ContactSchedule"]]


def _chunks(pairs: Pairs) -> Iterator[Chunk]:
    chunk: Chunk = []
    for pair in pairs:
        chunk.append(pair)
        if len(chunk) == FLUSH_EVERY:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _chunks_with_texts(
    run: PlanRun, pairs: Pairs
) -> Iterator[tuple[Chunk, list[list[str]] | None]]:
    """Chunks of contacts, with their rendered texts when asked.

    Rendering is most of the work of `--render`, so from the second chunk on it runs in
    worker processes, a few chunks ahead of the writer (bounded: the list is never held),
    and results are taken in input order, so the output is the same as a serial run.
    """
    chunks = _chunks(pairs)
    if not run.render:
        for chunk in chunks:
            yield chunk, None
        return
    first = next(chunks, None)
    if first is None:
        return
    texts = _RenderedTexts(run)
    yield first, [texts.for_contact(c) for c, _ in first]
    workers = _workers()
    if workers < 2:
        for chunk in chunks:
            yield chunk, [texts.for_contact(c) for c, _ in chunk]
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_start_worker, initargs=(run,)) as pool:
        pending: deque[tuple[Chunk, AsyncResult[list[list[str]]]]] = deque()
        for chunk in chunks:
            # Plain tuples pickle several times faster than the dataclass.
            rows = [(c.email, c.fields, c.timezone, c.row) for c, _ in chunk]
            pending.append((chunk, pool.apply_async(_render_chunk, (rows,))))
            if len(pending) >= workers * 2:
                done, result = pending.popleft()
                yield done, result.get()
        while pending:
            done, result = pending.popleft()
            yield done, result.get()


MAX_WORKERS = 4


def _workers() -> int:
    """Render processes: one per CPU (at most 4); CADENCE_WORKERS=1 renders in-process."""
    configured = os.environ.get("CADENCE_WORKERS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return min(os.cpu_count() or 1, MAX_WORKERS)


_worker_texts: _RenderedTexts | None = None


def _start_worker(run: PlanRun) -> None:
    global _worker_texts
    _worker_texts = _RenderedTexts(run)


def _render_chunk(rows: list[tuple[str, dict[str, str], str | None, int]]) -> list[list[str]]:
    from engine.contacts import Contact

    assert _worker_texts is not None
    return [_worker_texts.for_contact(Contact(*row)) for row in rows]


def _encode(
    run: PlanRun, schedule: ContactSchedule
) -> tuple[ContactSchedule, list[str], list[str]]:
    from engine.compiler import rows_for
    from engine.contacts import Contact

    probe = Contact("", {"email": ""}, None, 0)
    suffixes = []
    for row in rows_for(run.cadence, probe, schedule):
        data = row.as_dict()
        del data["contact"]
        suffixes.append(_dumps(data)[1:-1])
    return schedule, suffixes, [""] + [s + "}\n" for s in suffixes]


class _RenderedTexts:
    """`, "subject": …, "body": …}` per step for a contact, memoised on what it reads.

    Call and InMail titles (`Call Ava Nakamura`) vary with every name, so only their
    notes are memoised and the title is encoded per contact.
    """

    def __init__(self, run: PlanRun) -> None:
        from engine.messages import step_text_reads
        from engine.model import StepKind

        self.run = run
        self.reads = step_text_reads(run.cadence)
        titles = {StepKind.CALL: "Call ", StepKind.INMAIL: "InMail "}
        self.steps = [(s, titles.get(s.kind)) for s in run.cadence.steps]
        self.memo: dict[tuple[str | None, ...], str] = {}
        self.lookups = dict.fromkeys(self.reads, 0)
        self.hits = dict.fromkeys(self.reads, 0)

    def for_contact(self, contact: Contact) -> list[str]:
        from engine.messages import PREVIEW_UNSUBSCRIBE_URL, StepTexts, display_name

        fields = contact.fields
        texts: StepTexts | None = None
        out: list[str] = []
        for step, title in self.steps:
            reads = self.reads[step.id]
            key = None if reads is None else (step.id, *map(fields.get, reads))
            tail = None if key is None else self.memo.get(key)
            if key is not None:
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
        # A step whose texts rarely repeat (e.g. they read first name *and* company) would
        # only fill memory: after PROBE lookups it stops being memoised at all.
        n = self.lookups[step_id] = self.lookups[step_id] + 1
        self.hits[step_id] += hit
        if n == PROBE and self.hits[step_id] < PROBE * MIN_HIT_RATE:
            self.reads[step_id] = None
