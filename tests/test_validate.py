"""Data-driven validation cases: every file under tests/cases/validate/{valid,invalid}.

An invalid case `name.yaml` has a sibling `name.expected` listing `line:col [rule-id]`,
one finding per line, in output order. Adding a case needs files, not code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence_engine.engine.errors import InputError
from cadence_engine.engine.findings import Severity
from cadence_engine.engine.rules import catalogue
from cadence_engine.engine.validate import load_cadence, validate_path, validate_text

from .conftest import CADENCES, ROOT

CASES = ROOT / "tests" / "cases" / "validate"
VALID = sorted((CASES / "valid").glob("*.yaml"))
INVALID = sorted((CASES / "invalid").glob("*.yaml"))
# file/unreadable is tested below with a folder passed as a file; schema/invalid is the
# safety net for a keyword without a more specific rule, which the schema has none of now.
NO_CASE_FILE = {"file/unreadable", "schema/invalid"}


def _got(path: Path) -> list[str]:
    _, findings, _ = validate_path(path)
    return [f"{f.line}:{f.col} [{f.rule}]" for f in findings]


@pytest.mark.parametrize("path", VALID + sorted(CADENCES.glob("*.yaml")), ids=lambda p: p.name)
def test_valid_cases_and_example_cadences_are_clean(path: Path) -> None:
    cadence, findings, _ = validate_path(path)
    assert [f.render() for f in findings] == []
    assert cadence is not None and cadence.steps


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_case_reports_expected_findings(path: Path) -> None:
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    assert expected, f"{path.name}: an invalid case needs at least one expected finding"
    assert _got(path) == expected


def test_every_rule_has_an_invalid_case() -> None:
    covered = {
        line.split("[", 1)[1].rstrip("]")
        for path in INVALID
        for line in path.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    }
    assert set(catalogue()) - NO_CASE_FILE - covered == set()


def test_valid_cases_cover_every_send_option_and_step_kind() -> None:
    text = "".join(p.read_text(encoding="utf-8") for p in VALID)
    for option in ("choose_at_launch", "send: task", "same_time_as_previous", "send: {at:"):
        assert option in text
    for kind in ("email:", "call:", "inmail:", "custom:", "follow_up: true", "contact_fields"):
        assert kind in text


def test_warnings_do_not_block_a_cadence() -> None:
    cadence, findings, _ = validate_path(CASES / "invalid" / "same-time-day-1.yaml")
    assert [f.severity for f in findings] == [Severity.WARNING]
    assert cadence is not None


def test_load_cadence_raises_with_every_error_line() -> None:
    path = CASES / "invalid" / "template-variable.yaml"
    with pytest.raises(InputError) as info:
        load_cadence(path)
    message = str(info.value)
    assert f"{path}:7:18: unknown contact field 'contact.compny'" in message
    assert message.count("[template/unknown-variable]") == 6


def test_load_cadence_returns_the_example(example_cadence_path: Path) -> None:
    assert load_cadence(example_cadence_path).step("bump-2").day == 4


def test_unreadable_file_is_a_finding(tmp_path: Path) -> None:
    folder = tmp_path / "looks-like.yaml"
    folder.mkdir()
    _, findings, _ = validate_path(folder)
    assert [(f.line, f.rule) for f in findings] == [(1, "file/unreadable")]


README = ROOT / "README.md"


def test_readme_rule_table_is_generated_from_the_catalogue() -> None:
    from cadence_engine.engine.rules import markdown_table

    text = README.read_text(encoding="utf-8")
    table = text.split("<!-- rules:start -->\n", 1)[1].split("<!-- rules:end -->", 1)[0]
    assert table == markdown_table()


@pytest.mark.parametrize(
    ("zone", "words"),
    [
        ("GMT", "(did you mean UTC or Europe/London?)"),
        ("EST", "(did you mean America/New_York?)"),
        ("CET", "(did you mean Europe/Paris?)"),
        ("Etc/GMT+5", "fixed UTC offset, not a place"),
        ("Europe/Amsterdm", "(did you mean 'Europe/Amsterdam'?)"),
        ("contact", "`contact` is a value of settings.timezone only"),
    ],
)
def test_timezone_hints_name_only_accepted_zones(zone: str, words: str) -> None:
    text = (
        "cadence: 1\nname: n\nsender: {name: s, email: s@a.example}\n"
        f"settings: {{default_timezone: {zone}}}\nsteps:\n  - {{id: a, day: 1, call: {{}}}}\n"
    )
    _, findings = validate_text(text, "z.yaml")
    assert [f.rule for f in findings] == ["timezone/iana"]
    assert words in findings[0].message


def test_readme_complete_example_is_the_shipped_cadence() -> None:
    # The shipped file is validated with the other examples; the README shows it whole.
    text = README.read_text(encoding="utf-8")
    section = text.split("### A complete example\n", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```\n", 1)[0]
    assert example == (CADENCES / "heads-of-platform.yaml").read_text(encoding="utf-8")
