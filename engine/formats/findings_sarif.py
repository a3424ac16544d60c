"""SARIF 2.1.0 findings, for GitHub code scanning and other SARIF viewers.

Every rule of the catalogue is listed in `tool.driver.rules` with its summary and help,
so a viewer can explain a finding without our docs.
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from engine.findings import Finding, Rule, Severity
from engine.formats.findings import ReportOptions

if TYPE_CHECKING:
    from engine.validate import ValidationReport

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://cadence-engine.example/"


def _level(severity: Severity) -> str:
    return "error" if severity is Severity.ERROR else "warning"


def _uri(path: str) -> str:
    pure = PurePath(path)
    return pure.as_uri() if pure.is_absolute() else pure.as_posix()


def _rule(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": "".join(part.title() for part in rule.id.replace("/", "-").split("-")),
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.help.strip()},
        "help": {"text": rule.help.strip(), "markdown": rule.help.strip()},
        "defaultConfiguration": {"level": _level(rule.severity)},
    }


def _result(finding: Finding, index: dict[str, int]) -> dict[str, Any]:
    return {
        "ruleId": finding.rule,
        "ruleIndex": index[finding.rule],
        "level": _level(finding.severity),
        "message": {"text": finding.message},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": _uri(finding.file)},
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
    from engine.rules import catalogue

    rules = list(catalogue().values())
    index = {r.id: i for i, r in enumerate(rules)}
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "cadence",
                        "informationUri": INFORMATION_URI,
                        "version": _version(),
                        "rules": [_rule(r) for r in rules],
                    }
                },
                "results": [_result(f, index) for f in report.findings],
            }
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
