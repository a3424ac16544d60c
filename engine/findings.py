"""One `Finding` type for every problem, whatever found it, and the rule catalogue.

Rule ids are stable: they appear in output, SARIF and the README's rule table.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple


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

    def render(self) -> str:
        """The one-line form every text output uses: `path:line:col: message [rule-id]`."""
        prefix = "warning: " if self.severity is Severity.WARNING else ""
        return f"{self.location()}: {prefix}{self.message} [{self.rule}]"


class Rule(NamedTuple):
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


def with_article(phrase: str) -> str:
    """`phrase` after "a" or "an" as it is spoken ("an email task", "an inmail step")."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ` (did you mean 'x'?)` suffix when a candidate is close to `word`, else ""."""
    others = [c for c in candidates if c != word]
    close = difflib.get_close_matches(word, others, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
