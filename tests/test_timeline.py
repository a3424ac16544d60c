"""Mermaid Gantt timelines: by campaign day (`cadence timeline`) and on a plan's dates."""

from __future__ import annotations

import re

from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.timeline import campaign_timeline, step_label
from cadence_engine.engine.validate import load_cadence

from .conftest import CADENCES
from .helpers.plan_cadences import email, make_cadence, task

TASK_LINE = re.compile(r"^    \d+\. [^:;#]+ :(active, )?s\d+, \d{4}-\d{2}-\d{2}, 1d$")


def test_campaign_timeline_of_the_example() -> None:
    text = campaign_timeline(load_cadence(CADENCES / "heads-of-platform.yaml"))
    assert text == (
        "```mermaid\n"
        "gantt\n"
        "    title Outbound — heads of platform (campaign days)\n"
        "    dateFormat YYYY-MM-DD\n"
        "    axisFormat day %-j\n"
        "    tickInterval 1day\n"
        "    section Automatic emails\n"
        "    1. intro · choose at launch :s1, 1970-01-01, 1d\n"
        "    3. bump · same time as previous :s3, 1970-01-03, 1d\n"
        "    4. bump-2 · 14∶00, follow-up :s4, 1970-01-04, 1d\n"
        "    section Email tasks\n"
        "    6. last · email task :active, s6, 1970-01-08, 1d\n"
        "    section Calls\n"
        "    2. call-1 :active, s2, 1970-01-02, 1d\n"
        "    section InMail\n"
        "    5. li :active, s5, 1970-01-05, 1d\n"
        "    section Custom tasks\n"
        "    7. card · Send a handwritten card :active, s7, 1970-01-08, 1d\n"
        "```\n"
    )


def test_every_task_line_parses_as_a_gantt_task() -> None:
    for path in sorted(CADENCES.glob("*.yaml")):
        lines = campaign_timeline(load_cadence(path)).splitlines()
        tasks = [x for x in lines if x.startswith("    ") and ", 1d" in x]
        assert tasks and all(TASK_LINE.match(x) for x in tasks), path


def test_labels_cannot_break_the_chart() -> None:
    cad = make_cadence(
        [
            email("a", 1, {"at": "10:00"}),
            task("t", 2, "custom", title="Call re: #42; {{ contact.company }}"),
        ]
    )
    assert step_label(cad.step("t")) == "2. t · Call re 42 …"
    assert all(TASK_LINE.match(x) for x in campaign_timeline(cad).splitlines() if ", 1d" in x)


def test_timeline_command() -> None:
    result = CliRunner().invoke(cadence, ["timeline", str(CADENCES / "event-follow-up.yaml")])
    assert result.exit_code == 0
    assert result.stdout.startswith("```mermaid\ngantt\n")
    assert "    2. nudge · same time as previous, follow-up :s2, 1970-01-03, 1d" in result.stdout
