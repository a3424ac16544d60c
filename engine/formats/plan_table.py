"""`plan -f table` (the default): aligned columns for a terminal.

Column widths come from the first rows (a plan streams, it is never held whole); a
longer value later just pushes its line out. With `--render`, each row is followed by
its rendered subject and body, indented.
"""

from __future__ import annotations

from itertools import chain, islice
from typing import TextIO

from ..plan import PlannedStep
from .plan_formats import (
    Pairs,
    PlanRun,
    depends_text,
    local_text,
    note_text,
    planned_rows,
    utc_text,
)

HEADER = (
    "CONTACT",
    "DAY",
    "STEP",
    "ACTION",
    "DUE (LOCAL)",
    "ZONE",
    "DUE (UTC)",
    "DEPENDS ON",
    "NOTE",
)
SAMPLE = 2000


def cells(row: PlannedStep) -> tuple[str, ...]:
    return (
        row.contact,
        str(row.day),
        row.step_id,
        str(row.action),
        local_text(row),
        row.zone,
        utc_text(row),
        depends_text(row),
        note_text(row),
    )


def write(run: PlanRun, pairs: Pairs, out: TextIO) -> int:
    rows = planned_rows(run, pairs)
    head = list(islice(rows, SAMPLE))
    widths = [len(h) for h in HEADER]
    for row in head:
        widths = [max(w, len(c)) for w, c in zip(widths, cells(row), strict=True)]

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip() + "\n"

    out.write(line(HEADER))
    count = 0
    for row in chain(head, rows):
        out.write(line(cells(row)))
        if run.render and row.subject is not None:
            out.write(f"    subject: {row.subject}\n")
            for text in (row.body or "").rstrip("\n").split("\n"):
                out.write(f"    | {text}".rstrip() + "\n")
        count += 1
    return count
