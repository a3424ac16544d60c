"""JSON findings, versioned: `{"version": 1, "summary": {...}, "files": [...], "findings": [...]}`.

The shape is documented in the README (Validating cadences → json); new keys may be added
within a version, none is removed or renamed without a new `version`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..findings import Finding
from .findings import ReportOptions

if TYPE_CHECKING:
    from ..validate import ValidationReport

VERSION = 1


def pointer(path: tuple[str | int, ...]) -> str:
    """RFC 6901 JSON Pointer of a finding's path ("" for the whole document)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def finding_dict(finding: Finding) -> dict[str, Any]:
    return {
        "file": finding.file,
        "line": finding.line,
        "col": finding.col,
        "rule": finding.rule,
        "severity": str(finding.severity),
        "message": finding.message,
        "path": pointer(finding.path),
    }


def render(report: ValidationReport, options: ReportOptions) -> str:
    document = {
        "version": VERSION,
        "summary": {
            "files": len(report.files),
            "files_with_findings": report.files_with_findings,
            "errors": report.errors,
            "warnings": report.warnings,
        },
        "files": [
            {
                "path": r.path,
                "errors": sum(f.severity == "error" for f in r.findings),
                "warnings": sum(f.severity == "warning" for f in r.findings),
            }
            for r in report.files
        ],
        "findings": [finding_dict(f) for f in report.findings],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
