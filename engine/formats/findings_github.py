"""GitHub Actions workflow commands: one `::error file=…,line=…,col=…,title=…::message`
per finding, so findings show as annotations on the pull request's diff.

Escaping follows the runner's rules: in the message `%`, CR and LF are percent-encoded;
in property values also `:` and `,`, which would otherwise end the value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..findings import Finding, Severity
from .findings import ReportOptions, summary

if TYPE_CHECKING:
    from ..validate import ValidationReport


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(finding: Finding) -> str:
    level = "error" if finding.severity is Severity.ERROR else "warning"
    props = ",".join(
        f"{key}={escape_property(value)}"
        for key, value in (
            ("file", finding.file),
            ("line", str(finding.line)),
            ("col", str(finding.col)),
            ("title", finding.rule),
        )
    )
    return f"::{level} {props}::{escape_data(finding.message)}"


def render(report: ValidationReport, options: ReportOptions) -> str:
    return "".join(command(f) + "\n" for f in report.findings) + summary(report) + "\n"
