"""Finding reporters by name: the registry the CLI's `--format` choice is built from.

Each reporter module exposes `render(report, options) -> str`; modules are imported only
when chosen, so listing the names costs nothing at startup.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..validate import ValidationReport

FORMATS: dict[str, str] = {
    "text": "cadence_engine.engine.formats.findings_text",
    "json": "cadence_engine.engine.formats.findings_json",
    "github": "cadence_engine.engine.formats.findings_github",
    "sarif": "cadence_engine.engine.formats.findings_sarif",
}


@dataclass(frozen=True, slots=True)
class ReportOptions:
    color: bool = False  # ANSI colours (text format, on a terminal, unless NO_COLOR)
    snippets: bool = False  # source line with a caret under each finding (text format)


class Reporter(Protocol):
    def __call__(self, report: ValidationReport, options: ReportOptions) -> str: ...


def reporter(name: str) -> Reporter:
    module = importlib.import_module(FORMATS[name])
    render: Reporter = module.render
    return render


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(report: ValidationReport) -> str:
    """`N errors, M warnings in K of T files`, or `T files checked: no problems`."""
    if not report.findings:
        return f"{plural(len(report.files), 'file')} checked: no problems"
    return (
        f"{plural(report.errors, 'error')}, {plural(report.warnings, 'warning')} in "
        f"{report.files_with_findings} of {plural(len(report.files), 'file')}"
    )
