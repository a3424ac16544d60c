"""`plan -f markdown`: a GitHub table (for a pull request or a wiki page)."""

from __future__ import annotations

import re
from typing import TextIO

from .plan_formats import (
    Pairs,
    PlanRun,
    depends_text,
    local_text,
    note_text,
    planned_rows,
    utc_text,
)

HEADER = [
    "Contact",
    "Day",
    "Step",
    "Action",
    "Due (local)",
    "Zone",
    "Due (UTC)",
    "Depends on",
    "Note",
]


def cell(text: str) -> str:
    """Pipes and newlines would break the table; HTML breaks keep multi-line text.

    `&`, `<` and `>` become entities so contact data or an address like `<a@b.example>`
    shows as written instead of being read as HTML or an autolink.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")


def code_cell(text: str) -> str:
    """`text` as a code span in a table cell, shown exactly as written.

    Inside a code span entities are not decoded, so nothing is turned into one; the fence
    is one backtick longer than the longest run of backticks in `text` (CommonMark), padded
    with a space when `text` starts or ends with one; a pipe is escaped (GFM reads `\\|`
    as a pipe inside a cell's spans too)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    body = text.replace("|", "\\|").replace("\n", " ")
    return f"{fence}{pad}{body}{pad}{fence}"


def write(run: PlanRun, pairs: Pairs, out: TextIO) -> int:
    header = HEADER + (["Subject", "Body"] if run.render else [])
    out.write(f"### Plan: {cell(run.cadence.name)}\n\n")
    out.write("| " + " | ".join(header) + " |\n")
    out.write("|" + "---|" * len(header) + "\n")
    count = 0
    for row in planned_rows(run, pairs):
        texts = [
            str(row.day),
            str(row.action),
            local_text(row),
            row.zone,
            utc_text(row),
            depends_text(row),
            note_text(row),
        ]
        if run.render:
            texts += [row.subject or "", (row.body or "").rstrip("\n")]
        day, action, *rest = (cell(v) for v in texts)
        values = [code_cell(row.contact), day, code_cell(row.step_id), action, *rest]
        out.write("| " + " | ".join(values) + " |\n")
        count += 1
    return count
