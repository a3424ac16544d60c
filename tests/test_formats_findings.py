"""Finding reporters: json shape, GitHub escaping, SARIF 2.1.0, text snippets and colour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.findings import Finding, Severity
from cadence_engine.engine.formats.findings import ReportOptions, reporter
from cadence_engine.engine.formats.findings_github import command
from cadence_engine.engine.rules import catalogue
from cadence_engine.engine.validate import FileResult, ValidationReport

from .conftest import ROOT

INVALID = ROOT / "tests" / "cases" / "validate" / "invalid"


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cadence, ["validate", *args], env={"GITHUB_ACTIONS": ""})
    return result.exit_code, result.stdout


def test_json_is_versioned_with_summary_and_pointers() -> None:
    path = INVALID / "time-hhmm.yaml"
    code, out = cli("-f", "json", str(path))
    document = json.loads(out)
    assert code == 1 and document["version"] == 1
    assert document["summary"] == {"files": 1, "files_with_findings": 1, "errors": 4, "warnings": 0}
    assert document["files"] == [{"path": str(path), "errors": 4, "warnings": 0}]
    first = document["findings"][0]
    assert first == {
        "file": str(path),
        "line": 8,
        "col": 24,
        "rule": "time/hhmm",
        "severity": "error",
        "message": first["message"],
        "path": "/settings/send_window/start",
    }


def test_github_escapes_data_and_properties() -> None:
    finding = Finding(
        "dir,with:odd%name.yaml", 3, 7, "a/b", Severity.WARNING, "50% off:\nsecond, line\r"
    )
    assert command(finding) == (
        "::warning file=dir%2Cwith%3Aodd%25name.yaml,line=3,col=7,title=a/b"
        "::50%25 off:%0Asecond, line%0D"
    )


def test_github_format_lines_for_every_finding() -> None:
    code, out = cli("-f", "github", str(INVALID / "same-day-order.yaml"))
    lines = out.splitlines()
    assert code == 0  # warnings only
    assert (
        lines[0].startswith("::warning file=")
        and ",line=9,col=32,title=step-order/same-day::" in lines[0]
    )
    assert lines[-1] == "0 errors, 2 warnings in 1 of 1 file"


def test_sarif_lists_every_rule_and_locates_results(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    path = INVALID / "template-variable.yaml"
    code, out = cli("-f", "sarif", str(path))
    sarif = json.loads(out)
    assert code == 1 and sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(catalogue())
    assert all(r["help"]["text"] and r["shortDescription"]["text"] for r in rules)
    result = run["results"][0]
    assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == "template/unknown-variable"
    assert result["level"] == "error"
    location = result["locations"][0]["physicalLocation"]
    assert location["region"] == {"startLine": 7, "startColumn": 18}
    assert location["artifactLocation"] == {
        "uri": "tests/cases/validate/invalid/template-variable.yaml",
        "uriBaseId": "%SRCROOT%",
    }
    assert run["originalUriBaseIds"] == {"%SRCROOT%": {"uri": ROOT.as_uri() + "/"}}


def test_sarif_gives_what_code_scanning_hosts_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_bytes((INVALID / "template-variable.yaml").read_bytes())
    monkeypatch.chdir(INVALID)
    code, out = cli("-f", "sarif", "template-variable.yaml", str(elsewhere))
    assert code == 1
    run = json.loads(out)["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["fullName"].startswith("cadence validate (cadence-engine ")
    assert run["automationDetails"] == {"id": "cadence-validate/"}
    for rule in driver["rules"]:
        page, anchor = rule["helpUri"].split("#")
        assert page == driver["informationUri"]
        assert f'<a id="{anchor}"></a>`{rule["id"]}`' in readme
    locations = [r["locations"][0]["physicalLocation"]["artifactLocation"] for r in run["results"]]
    assert {"uri": "template-variable.yaml", "uriBaseId": "%SRCROOT%"} in locations
    assert {"uri": elsewhere.as_uri()} in locations


def _report() -> ValidationReport:
    text = "cadence: 1\nname: x\n"
    finding = Finding("x.yaml", 2, 7, "schema/value", Severity.ERROR, "bad name")
    return ValidationReport((FileResult("x.yaml", (finding,), text),))


def test_text_snippet_puts_a_caret_under_the_column() -> None:
    out = reporter("text")(_report(), ReportOptions(snippets=True))
    assert out.splitlines() == [
        "x.yaml:2:7: bad name [schema/value]",
        "2 | name: x",
        "  |       ^",
        "1 error, 0 warnings in 1 of 1 file",
    ]


def test_text_colour_only_when_asked() -> None:
    assert "\033[" in reporter("text")(_report(), ReportOptions(color=True))
    assert "\033[" not in reporter("text")(_report(), ReportOptions())
