"""Text findings, actionlint style: `path:line:col: message [rule-id]`, then a summary.

On a terminal each finding also shows its source line with a caret under the column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..findings import Finding, Severity
from .findings import ReportOptions, summary

if TYPE_CHECKING:
    from ..validate import ValidationReport

RED, YELLOW, BOLD, DIM, RESET = "\033[31m", "\033[33m", "\033[1m", "\033[2m", "\033[0m"


def render(report: ValidationReport, options: ReportOptions) -> str:
    out: list[str] = []
    for result in report.files:
        lines = result.text.splitlines() if result.text is not None else []
        for finding in result.findings:
            out.append(_line(finding, options.color))
            if options.snippets and 1 <= finding.line <= len(lines):
                out.extend(_snippet(finding, lines[finding.line - 1], options.color))
    out.append(summary(report))
    return "\n".join(out) + "\n"


def _line(finding: Finding, color: bool) -> str:
    if not color:
        return finding.render()
    tint = RED if finding.severity is Severity.ERROR else YELLOW
    label = "" if finding.severity is Severity.ERROR else f"{tint}warning:{RESET} "
    return (
        f"{BOLD}{finding.location()}{RESET}: {label}{finding.message} {tint}[{finding.rule}]{RESET}"
    )


def _snippet(finding: Finding, source: str, color: bool) -> list[str]:
    number = str(finding.line)
    gutter = " " * len(number)
    caret = " " * max(finding.col - 1, 0) + "^"
    if color:
        tint = RED if finding.severity is Severity.ERROR else YELLOW
        caret = f"{tint}{caret}{RESET}"
        return [f"{DIM}{number} |{RESET} {source}", f"{DIM}{gutter} |{RESET} {caret}"]
    return [f"{number} | {source}", f"{gutter} | {caret}"]
