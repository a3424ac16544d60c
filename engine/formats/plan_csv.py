"""`plan -f csv`: one row per (contact, step) for spreadsheets.

A spreadsheet runs a cell that begins with `=`, `+`, `-` or `@` (or a tab or carriage
return before one) as a formula, so a contact list could plant one in a reviewer's
sheet (`=HYPERLINK(…)`, DDE). Cells that carry contact data or rendered text (contact,
subject, body) are written with a leading `'` when they begin so, as OWASP advises:
spreadsheets show the text, and `-f json` / `-f jsonl` keep every value as it is.
"""

from __future__ import annotations

import csv
from typing import TextIO

from .plan_formats import Pairs, PlanRun, planned_rows

COLUMNS = [
    "contact",
    "step",
    "day",
    "action",
    "due_local",
    "due_utc",
    "zone",
    "depends_on",
    "thread",
    "moved",
]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str | None) -> str:
    """`text` as a spreadsheet shows it, never as a formula it runs."""
    if not text:
        return ""
    return "'" + text if text.startswith(_FORMULA_START) else text


def write(run: PlanRun, pairs: Pairs, out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + (["subject", "body"] if run.render else []))
    rows = 0
    for row in planned_rows(run, pairs):
        data = row.as_dict()
        data["depends_on"] = ";".join(data["depends_on"])
        data["contact"] = _cell(data["contact"])
        writer.writerow(
            [data.get(c) or "" for c in COLUMNS]
            + ([_cell(row.subject), _cell(row.body)] if run.render else [])
        )
        rows += 1
    return rows
