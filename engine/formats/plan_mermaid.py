"""`plan -f mermaid`: the cadence as a Mermaid Gantt chart, on the first contact's dates.

Every contact in a zone shares the same dates, so one chart shows the launch; the
contact-independent picture (by campaign day) is `cadence timeline`.
"""

from __future__ import annotations

from typing import TextIO

from .plan_formats import Pairs, PlanRun


def write(run: PlanRun, pairs: Pairs, out: TextIO) -> int:
    from ..timeline import dated_timeline

    for contact, schedule in pairs:
        out.write(dated_timeline(run.cadence, schedule, contact.email))
        return len(schedule.slots)
    out.write(dated_timeline(run.cadence, None, ""))
    return 0
