"""The cadence as a Mermaid Gantt chart: one bar per step, one section per step type.

GitHub renders ```mermaid blocks in pull requests, issues and Markdown files, so the
picture travels with a review (`cadence diff -f markdown`) without any image files.

Campaign days are abstract, so `campaign_timeline` draws day N on the date 1970-01-0N
(a date string, so the browser's zone cannot shift it) and labels the axis with the day
of the year (`%-j`), which is exactly N. `dated_timeline` uses a real schedule's dates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, time, timedelta

from .model import Cadence, SendKind, Step, StepKind
from .schedule import ContactSchedule

_EPOCH = date(1970, 1, 1)
_SECTIONS = {
    "send": "Automatic emails",
    "email-task": "Email tasks",
    "call": "Calls",
    "inmail": "InMail",
    "custom": "Custom tasks",
}


def _section(step: Step) -> str:
    if step.email is not None:
        return "email-task" if step.email.send.kind is SendKind.TASK else "send"
    return step.kind.value


def step_label(step: Step) -> str:
    """`4. bump-2 · 14:00, follow-up`: the step's place, its id and what decides its time.

    The place comes first because Mermaid's Gantt lexer reads a line that begins with a
    keyword (`call`, `click`, `title`, `section`, `excludes`, …) as that statement, not as a
    task, and a step id may be any of those words; no keyword begins with a digit.
    """
    return f"{step.index + 1}. {_describe(step)}"


def _describe(step: Step) -> str:
    if step.email is not None:
        send = step.email.send
        how = _hhmm(send.at) if send.at else send.kind.value.replace("_", " ")
        if send.kind is SendKind.TASK:
            how = "email task"
        extra = ", follow-up" if step.email.follow_up else ""
        return _clean(f"{step.id} · {how}{extra}")
    if step.kind is StepKind.CUSTOM and step.title:
        return _clean(f"{step.id} · {step.title}")
    return _clean(step.id + (f" · {_hhmm(step.at)}" if step.at else ""))


def _hhmm(t: time) -> str:
    # U+2236 RATIO looks like a colon but does not end the Gantt task name.
    return f"{t:%H}\u2236{t:%M}"


def _clean(text: str) -> str:
    # ':' separates a Gantt task's name from its data, '#' and ';' end lines; Jinja
    # markup is noise in a picture.
    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "…", text)
    return re.sub(r"\s+", " ", re.sub(r"[:;#]", " ", text)).strip()


def _gantt(title: str, head: list[str], bars: Iterable[tuple[Step, date]]) -> str:
    by_section: dict[str, list[str]] = {key: [] for key in _SECTIONS}
    for step, day in bars:
        key = _section(step)
        tag = "" if key == "send" else "active, "
        by_section[key].append(f"    {step_label(step)} :{tag}s{step.index + 1}, {day}, 1d")
    lines = ["```mermaid", "gantt", f"    title {_clean(title)}", *head]
    for key, rows in by_section.items():
        if rows:
            lines += [f"    section {_SECTIONS[key]}", *rows]
    lines.append("```")
    return "\n".join(lines) + "\n"


def campaign_timeline(cadence: Cadence, title: str | None = None) -> str:
    """The cadence by campaign day (no contacts, no dates): what a reviewer needs."""
    head = ["    dateFormat YYYY-MM-DD", "    axisFormat day %-j", "    tickInterval 1day"]
    bars = [(s, _EPOCH + timedelta(days=s.day - 1)) for s in cadence.steps]
    return _gantt(title or f"{cadence.name} (campaign days)", head, bars)


def dated_timeline(cadence: Cadence, schedule: ContactSchedule | None, contact: str) -> str:
    """The cadence on the local dates of one contact's schedule (weekends shown greyed)."""
    head = ["    dateFormat YYYY-MM-DD", "    axisFormat %a %d %b"]
    if cadence.settings.skip_weekends:
        head.append("    excludes weekends")
    holidays = sorted(cadence.settings.holidays)
    if holidays:
        head.append("    excludes " + ", ".join(d.isoformat() for d in holidays))
    if schedule is None:
        return _gantt(f"{cadence.name} (no contacts)", head, [])
    bars = [(slot.step, slot.due_local.date()) for slot in schedule.slots]
    return _gantt(f"{cadence.name} — {contact} ({schedule.zone})", head, bars)
