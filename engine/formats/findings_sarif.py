"""SARIF 2.1.0 findings, for GitHub code scanning and other SARIF viewers.

Every rule of the catalogue is listed in `tool.driver.rules` with its summary, help and
`helpUri` (its row in the README's rule table), so a viewer can explain a finding. Paths
are URIs relative to `%SRCROOT%` (the working directory, declared in
`originalUriBaseIds`) whenever they lie under it, as code-scanning hosts expect, even when
the command was given absolute paths.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from ..findings import Finding, Rule, Severity
from .findings import ReportOptions

if TYPE_CHECKING:
    from ..validate import ValidationReport

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://cadence-engine.example/"
SRCROOT = "%SRCROOT%"
# GitHub code scanning keeps one set of alerts per category: the part before the last '/'.
AUTOMATION_ID = "cadence-validate/"


def _level(severity: Severity) -> str:
    return "error" if severity is Severity.ERROR else "warning"


def _artifact(path: str, root: Path) -> dict[str, str]:
    pure = PurePath(path)
    if not pure.is_absolute():
        return {"uri": pure.as_posix(), "uriBaseId": SRCROOT}
    if pure.is_relative_to(root):
        return {"uri": pure.relative_to(root).as_posix(), "uriBaseId": SRCROOT}
    return {"uri": pure.as_uri()}


def _rule(rule: Rule) -> dict[str, Any]:
    from ..rules import anchor

    return {
        "id": rule.id,
        "name": "".join(part.title() for part in rule.id.replace("/", "-").split("-")),
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.help.strip()},
        "help": {"text": rule.help.strip(), "markdown": rule.help.strip()},
        "helpUri": f"{INFORMATION_URI}#{anchor(rule.id)}",
        "defaultConfiguration": {"level": _level(rule.severity)},
    }


def _result(finding: Finding, index: dict[str, int], root: Path) -> dict[str, Any]:
    return {
        "ruleId": finding.rule,
        "ruleIndex": index[finding.rule],
        "level": _level(finding.severity),
        "message": {"text": finding.message},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": _artifact(finding.file, root),
                    "region": {
                        "startLine": max(finding.line, 1),
                        "startColumn": max(finding.col, 1),
                    },
                }
            }
        ],
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cadence-engine")
    except PackageNotFoundError:
        return "0"


def render(report: ValidationReport, options: ReportOptions) -> str:
    from ..rules import catalogue

    rules = list(catalogue().values())
    index = {r.id: i for i, r in enumerate(rules)}
    root = Path.cwd()
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "cadence",
                        "fullName": f"cadence validate (cadence-engine {_version()})",
                        "informationUri": INFORMATION_URI,
                        "version": _version(),
                        "rules": [_rule(r) for r in rules],
                    }
                },
                "automationDetails": {"id": AUTOMATION_ID},
                "originalUriBaseIds": {SRCROOT: {"uri": root.as_uri() + "/"}},
                "results": [_result(f, index, root) for f in report.findings],
            }
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
