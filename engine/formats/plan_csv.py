"""`plan -f csv`: one row per (contact, step) for spreadsheets."""

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


def write(run: PlanRun, pairs: Pairs, out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + (["subject", "body"] if run.render else []))
    rows = 0
    for row in planned_rows(run, pairs):
        data = row.as_dict()
        data["depends_on"] = ";".join(data["depends_on"])
        writer.writerow(
            [data.get(c) or "" for c in COLUMNS]
            + ([row.subject or "", row.body or ""] if run.render else [])
        )
        rows += 1
    return rows
