"""Messages that say what to do: YAML mistakes, warnings, positions, missing files, summaries."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.validate import validate_text

from .conftest import CADENCES

HEAD = "cadence: 1\nname: x\nsender: {name: D, email: d@acme.example}\n"
TEMPLATES = "templates:\n  t: {subject: S, body: B}\n"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cadence, list(args))
    return result.exit_code, result.output


def messages(text: str) -> list[str]:
    return [f.render() for f in validate_text(text, "c.yaml")[1]]


def test_a_misindented_key_names_the_likely_cause_and_keeps_the_parser_text() -> None:
    text = HEAD + TEMPLATES + "steps:\n  - id: a\n    day: 1\n   call: {}\n"
    (message,) = messages(text)
    assert message.startswith("c.yaml:9:4: YAML syntax error: line 9 starts in column 4 but ")
    assert "the key above it (line 8) in column 5: keys of one mapping line up" in message
    assert "the parser says: expected <block end>, but found '<block mapping start>'" in message


def test_a_key_indented_deeper_than_its_neighbours_is_explained() -> None:
    text = "cadence: 1\nname: x\nsender:\n  name: D\n   email: d@acme.example\nsteps: []\n"
    (message,) = messages(text)
    assert "line 5 starts in column 4 but the key above it (line 4) in column 3" in message
    assert "mapping values are not allowed here" in message


def test_a_tab_after_a_colon_is_valid_yaml() -> None:
    text = HEAD + "settings:\n  daily_limit:\t50\n" + TEMPLATES
    text += "steps:\n  - {id: a, day: 1, email: {template: t, send: task}}\n"
    cad, findings = validate_text(text, "c.yaml")
    assert findings == [] and cad is not None
    assert cad.settings.daily_limit == 50
    assert messages(text.replace("  daily_limit:\t50", "\tdaily_limit: 50")) == [
        "c.yaml:5:1: YAML syntax error: a tab cannot indent YAML; indent with spaces [yaml/syntax]"
    ]


def test_same_time_with_no_earlier_email_says_what_the_plan_does() -> None:
    text = HEAD + TEMPLATES + "steps:\n  - {id: c, day: 1, call: {}}\n"
    text += "  - {id: a, day: 3, email: {template: t, send: same_time_as_previous}}\n"
    (message,) = messages(text)
    assert (
        "same_time_as_previous on day 3 has no email on an earlier day to copy: it goes on "
        "day 3 at the time of day the campaign was launched" in message
    )


def test_task_at_points_at_the_at_key() -> None:
    text = HEAD + TEMPLATES + "steps:\n  - id: a\n    day: 1\n    email:\n      template: t\n"
    text += '      send: {at: "10:00"}\n      at: "11:00"\n'
    (message,) = messages(text)
    assert message.startswith("c.yaml:12:7: ") and "[send-option/task-at]" in message


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "{missing}", "--contacts", "{contacts}"],
        ["preview", "{missing}", "--sample"],
        ["launch", "{missing}", "--contacts", "{contacts}"],
        ["timeline", "{missing}"],
        ["diff", "{missing}", "{cadence}"],
        ["validate", "{missing}"],
        ["fmt", "{missing}"],
        ["plan", "{cadence}", "--contacts", "{missing}", "--send-at", "09:00"],
        ["launch", "{cadence}", "--contacts", "{missing}", "--send-at", "09:00"],
        ["preview", "{cadence}", "--contact", "a@b.example", "--contacts", "{missing}"],
    ],
    ids=lambda a: " ".join([*a[:1], a[1].strip("{}"), *a[2:3]]),
)
def test_a_missing_file_exits_2_in_every_command(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CADENCE_DB", str(tmp_path / "state.db"))
    names = {
        "missing": str(tmp_path / "nosuch.yaml"),
        "contacts": str(CADENCES / "contacts.csv"),
        "cadence": str(CADENCES / "heads-of-platform.yaml"),
    }
    code, out = run(*(a.format(**names) for a in args))
    assert code == 2, out
    assert "nosuch.yaml: no such file" in out
    assert "hint: run cadence validate" not in out


def test_a_clean_run_reads_as_files_checked_no_problems() -> None:
    code, out = run("validate", str(CADENCES))
    assert (code, out) == (0, "3 files checked: no problems\n")
