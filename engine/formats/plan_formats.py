"""Plan reporters by name: the registry the CLI's `plan -f` choice is built from.

A reporter streams: it gets the (contact, schedule) pairs of a launch one at a time and
writes to a text stream, so a plan over a million contacts never sits in memory. Each
reporter module exposes `write(run, pairs, out) -> int` (the number of rows written);
modules are imported only when chosen.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from ..compiler import ContactSchedule, Launch
    from ..contacts import Contact
    from ..model import Cadence
    from ..plan import PlannedStep

FORMATS: dict[str, str] = {
    "table": "cadence_engine.engine.formats.plan_table",
    "json": "cadence_engine.engine.formats.plan_json",
    "jsonl": "cadence_engine.engine.formats.plan_jsonl",
    "csv": "cadence_engine.engine.formats.plan_csv",
    "markdown": "cadence_engine.engine.formats.plan_markdown",
    "mermaid": "cadence_engine.engine.formats.plan_mermaid",
}

Pairs = Iterable[tuple["Contact", "ContactSchedule"]]
FLUSH_EVERY = 1024  # contacts per write() (and per render chunk): bounded memory


@dataclass(frozen=True, slots=True)
class PlanRun:
    """What every reporter needs besides the rows: the cadence, the launch, the options."""

    cadence: Cadence
    launch: Launch
    render: bool = False


class Reporter(Protocol):
    def __call__(self, run: PlanRun, pairs: Pairs, out: TextIO) -> int: ...


def reporter(name: str) -> Reporter:
    module = importlib.import_module(FORMATS[name])
    write: Reporter = module.write
    return write


def planned_rows(run: PlanRun, pairs: Pairs) -> Iterator[PlannedStep]:
    """The generic path: full `PlannedStep` rows (rendered when asked)."""
    from ..compiler import rows_for

    for contact, schedule in pairs:
        yield from rows_for(run.cadence, contact, schedule, render=run.render)


def depends_text(row: PlannedStep) -> str:
    """`after task call-1`, `at sent time of intro`: dependencies in words (R4, R5)."""
    from ..plan import DependencyKind

    words = {DependencyKind.TASK: "after task", DependencyKind.SENT_TIME: "at send time of"}
    return "; ".join(f"{words[d.kind]} {d.step_id}" for d in row.depends_on)


def note_text(row: PlannedStep) -> str:
    parts = []
    if row.thread_step_id:
        parts.append(f"reply to {row.thread_step_id}")
    if row.moved:
        parts.append(f"moved: {row.moved}")
    return "; ".join(parts)


def local_text(row: PlannedStep) -> str:
    return row.due_local.strftime("%a %Y-%m-%d %H:%M")


def utc_text(row: PlannedStep) -> str:
    return row.due_utc.strftime("%Y-%m-%d %H:%MZ")
