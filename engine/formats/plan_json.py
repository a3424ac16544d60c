"""`plan -f json`: one JSON document (launch + rows), streamed row by row."""

from __future__ import annotations

import json
from typing import TextIO

from .plan_formats import FLUSH_EVERY, Pairs, PlanRun, planned_rows


def write(run: PlanRun, pairs: Pairs, out: TextIO) -> int:
    send_at = run.launch.send_at
    head = {
        "cadence": run.cadence.name,
        "version": run.cadence.content_hash,
        "start": run.launch.start.isoformat().replace("+00:00", "Z"),
        "send_at": str(send_at) if send_at is not None else None,
    }
    out.write(json.dumps(head, ensure_ascii=False, indent=2)[:-2] + ',\n  "rows": [')
    rows = 0
    buffer: list[str] = []
    for row in planned_rows(run, pairs):
        buffer.append(
            ("," if rows else "") + "\n    " + json.dumps(row.as_dict(), ensure_ascii=False)
        )
        rows += 1
        if rows % FLUSH_EVERY == 0:
            out.write("".join(buffer))
            buffer.clear()
    out.write("".join(buffer) + ("\n  ]\n}\n" if rows else "]\n}\n"))
    return rows
