"""`plan -f jsonl`: one JSON object per (contact, step), the machine format for big lists.

This is the hot path of `bench/plan`: a schedule is shared by every contact in its zone,
so each slot's JSON (everything but the contact) is encoded once per schedule and a row
is one string concatenation. The output is byte-identical to
`json.dumps(row.as_dict(), ensure_ascii=False)` per row.
"""

from __future__ import annotations

import json
from typing import TextIO

from engine.formats.plan_formats import FLUSH_EVERY, Pairs, PlanRun


def write(run: PlanRun, pairs: Pairs, out: TextIO) -> int:
    from engine.compiler import rows_for
    from engine.contacts import Contact

    encoded: dict[int, tuple[object, list[str]]] = {}
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    probe = Contact("", {"email": ""}, None, 0)
    buffer: list[str] = []
    rows = 0
    for n, (contact, schedule) in enumerate(pairs, start=1):
        hit = encoded.get(id(schedule))
        if hit is None:
            # Keep the schedule alive with its encoding so its id() is never reused.
            suffixes = []
            for row in rows_for(run.cadence, probe, schedule):
                data = row.as_dict()
                del data["contact"]
                suffixes.append(dumps(data)[1:-1])
            hit = encoded[id(schedule)] = (schedule, suffixes)
        # Contact addresses are validated: no quotes, backslashes or control characters,
        # so they need no JSON escaping.
        head = '{"contact": "' + contact.email + '", '
        if run.render:
            from engine.messages import PREVIEW_UNSUBSCRIBE_URL, render_step_texts

            texts = render_step_texts(run.cadence, contact, unsubscribe_url=PREVIEW_UNSUBSCRIBE_URL)
            for slot, suffix in zip(schedule.slots, hit[1], strict=True):
                subject, body = texts[slot.step.id]
                buffer.append(
                    f'{head}{suffix}, "subject": {dumps(subject)}, "body": {dumps(body)}}}\n'
                )
        else:
            for suffix in hit[1]:
                buffer.append(head + suffix + "}\n")
        rows += len(hit[1])
        if n % FLUSH_EVERY == 0:
            out.write("".join(buffer))
            buffer.clear()
    out.write("".join(buffer))
    return rows
