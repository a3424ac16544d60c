"""One `Finding` type for every problem, whatever found it, and the rule catalogue.

Rule ids are stable: they appear in output, SARIF and the README's rule table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """A problem at a position in a file (1-based line and column; 0 when unknown)."""

    file: str
    line: int
    col: int
    rule: str
    severity: Severity
    message: str
    path: tuple[str | int, ...] = field(default=(), compare=False)

    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule id with its one-line summary and its longer help (used by SARIF and docs)."""

    id: str
    summary: str
    help: str
    severity: Severity = Severity.ERROR


RULES: dict[str, Rule] = {}


def rule(id: str, summary: str, help: str, severity: Severity = Severity.ERROR) -> Rule:
    """Register a rule in the catalogue (idempotent for the same id) and return it."""
    found = RULES.get(id)
    if found is not None:
        return found
    r = Rule(id, summary, help, severity)
    RULES[id] = r
    return r


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity is Severity.ERROR for f in findings)
