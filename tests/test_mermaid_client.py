"""Every chart we print parses in Mermaid 11 with every step shown (the real parser, by node).

A step id may be any slug, Gantt keywords included: `timeline`, `plan -f mermaid` and both
charts of `diff -f markdown` must still give one task per step and keep the chart's title.
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence

from .conftest import CADENCES
from .helpers.node_clients import node_script, run_json

# Words Mermaid's Gantt lexer reads at the start of a line (lower case, as a slug is).
GANTT_KEYWORDS = [
    "call",
    "click",
    "topaxis",
    "title",
    "section",
    "excludes",
    "includes",
    "dateformat",
    "axisformat",
    "tickinterval",
    "todaymarker",
    "inclusiveenddates",
    "gantt",
    "href",
    "weekday",
    "weekend",
    "acctitle",
    "accdescr",
    "accdescription",
    "2026-03-02",
]

CADENCE = """\
cadence: 1
name: Keyword check
sender: {{name: Dana Reyes, email: dana@acme.example}}
settings: {{default_timezone: Europe/Paris, holidays: [2026-03-04]}}
templates:
  a: {{subject: Hello, body: "Hi\\n"}}
steps:
  - {{id: intro, day: 1, email: {{template: a, send: {{at: "10:00"}}}}}}
  - {{id: {word}, day: 2, call: {{notes: Ring}}}}
  - {{id: later, day: {last}, email: {{template: a, send: same_time_as_previous}}}}
"""


def cli_charts(args: list[str]) -> str:
    result = CliRunner().invoke(cadence, args)
    assert result.exit_code in (0, 1), result.output  # diff exits 1 on changes
    return result.stdout


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every word's four charts (and each example's), parsed by one node process."""
    command = node_script("mermaid_tasks.mjs", "mermaid")
    tmp = tmp_path_factory.mktemp("mermaid")
    contacts = tmp / "contacts.csv"
    contacts.write_text("email,timezone\nava@northwind.example,Europe/Paris\n", encoding="utf-8")
    outputs: dict[str, str] = {}
    for word in GANTT_KEYWORDS:
        old = tmp / f"{word}-old.yaml"
        new = tmp / f"{word}-new.yaml"
        old.write_text(CADENCE.format(word=word, last=3), encoding="utf-8")
        new.write_text(CADENCE.format(word=word, last=4), encoding="utf-8")
        outputs[word] = "".join(
            [
                cli_charts(["timeline", str(old)]),
                cli_charts(["plan", str(old), "--contacts", str(contacts), "-f", "mermaid"]),
                cli_charts(["diff", str(old), str(new), "-f", "markdown"]),
            ]
        )
    for path in sorted(CADENCES.glob("*.yaml")):
        outputs[path.name] = cli_charts(["timeline", str(path)])
    everything = run_json(command, "".join(outputs.values()))
    result: dict[str, list[dict[str, Any]]] = {}
    for key, text in outputs.items():
        count = text.count("```mermaid")
        result[key], everything = everything[:count], everything[count:]
    return result


def assert_every_step_shown(chart: dict[str, Any], word: str, title: str) -> None:
    assert "error" not in chart, chart
    names = [name.strip() for name in chart["tasks"]]
    assert len(names) == 3, names
    assert f"2. {word}" in names
    assert chart["title"].startswith(title), chart["title"]


@pytest.mark.parametrize("word", GANTT_KEYWORDS)
def test_a_keyword_step_id_keeps_every_chart_whole(
    word: str, parsed: dict[str, list[dict[str, Any]]]
) -> None:
    timeline, plan, before, after = parsed[word]
    assert_every_step_shown(timeline, word, "Keyword check (campaign days)")
    assert_every_step_shown(plan, word, "Keyword check — ava@northwind.example")
    assert_every_step_shown(before, word, "Keyword check")
    assert_every_step_shown(after, word, "Keyword check")


@pytest.mark.parametrize("name", [p.name for p in sorted(CADENCES.glob("*.yaml"))])
def test_the_shipped_examples_parse(name: str, parsed: dict[str, list[dict[str, Any]]]) -> None:
    (chart,) = parsed[name]
    assert "error" not in chart, chart
    steps = (CADENCES / name).read_text(encoding="utf-8").count("- {id:")
    assert len(chart["tasks"]) == steps
