"""`plan -f markdown`: a GitHub table (for a pull request or a wiki page)."""

from __future__ import annotations

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


def write(run: PlanRun, pairs: Pairs, out: TextIO) -> int:
    header = HEADER + (["Subject", "Body"] if run.render else [])
    out.write(f"### Plan: {cell(run.cadence.name)}\n\n")
    out.write("| " + " | ".join(header) + " |\n")
    out.write("|" + "---|" * len(header) + "\n")
    count = 0
    for row in planned_rows(run, pairs):
        values = [
            f"`{row.contact}`",
            str(row.day),
            f"`{row.step_id}`",
            str(row.action),
            local_text(row),
            row.zone,
            utc_text(row),
            depends_text(row),
            note_text(row),
        ]
        if run.render:
            values += [row.subject or "", (row.body or "").rstrip("\n")]
        out.write("| " + " | ".join(cell(v) for v in values) + " |\n")
        count += 1
    return count
