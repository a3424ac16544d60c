"""The rules the schema's custom keywords enforce: one module per rule, its docstring its doc.

Each rule module registers its id with `engine.findings.rule` at import and offers a
`check` that yields `Issue`s. `engine.schema` runs them from its custom keywords, so one
validation pass yields every finding. `catalogue()` imports every module so the full
rule table (README, SARIF) is known even before anything was validated.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..findings import RULES, Rule, Severity

# Order is the order findings of one kind are reported in; new rules add a line here.
STEP_RULE_MODULES = (
    "day_order",
    "step_id_unique",
    "follow_up_previous",
    "same_time_day_one",
)
CADENCE_RULE_MODULES = (
    "template_reference",
    "template_subject",
    "template_syntax",
    "template_filter",
    "template_variable",
    "template_size",
    "same_day_order",
)
KEYWORD_RULE_MODULES = ("timezone_iana", "send_window_order", "sender_address")
# Rules the schema's standard keywords enforce (named with `x-rule`): registered, not run.
CATALOGUE_MODULES = ("yaml_rules", "schema_rules", "choose_at_launch_later")

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Issue:
    """What a rule found, relative to the instance its keyword was applied to.

    `at_key` points the position at the mapping key instead of its value; `text_pos` is a
    (line, col) inside a template string (1-based, col 0 when unknown), mapped onto the
    YAML file later so a Jinja error lands on its own line of a block scalar.
    """

    rule: Rule
    message: str
    path: Path = ()
    at_key: bool = False
    text_pos: tuple[int, int] | None = None

    @property
    def severity(self) -> Severity:
        return self.rule.severity


def step_dicts(steps: Any) -> list[tuple[int, dict[str, Any]]]:
    """The well-formed steps with their index; malformed ones get schema findings instead."""
    if not isinstance(steps, list):
        return []
    return [(i, s) for i, s in enumerate(steps) if isinstance(s, dict)]


def step_kind(step: dict[str, Any]) -> str | None:
    for kind in ("email", "call", "inmail", "custom"):
        if kind in step:
            return kind
    return None


def email_of(step: dict[str, Any]) -> dict[str, Any] | None:
    email = step.get("email")
    return email if isinstance(email, dict) else None


def _module(name: str) -> Any:
    return importlib.import_module(f"cadence_engine.engine.rules.{name}")


def step_checks() -> Iterator[Any]:
    for name in STEP_RULE_MODULES:
        yield _module(name).check


def cadence_checks() -> Iterator[Any]:
    for name in CADENCE_RULE_MODULES:
        yield _module(name).check


def catalogue() -> dict[str, Rule]:
    """Every rule id with its summary and help, in a stable order."""
    for name in (*CATALOGUE_MODULES, *KEYWORD_RULE_MODULES, *STEP_RULE_MODULES):
        _module(name)
    for name in CADENCE_RULE_MODULES:
        _module(name)
    return dict(sorted(RULES.items()))


def anchor(rule_id: str) -> str:
    """The rule's anchor in the README's rule table (`rule-day-order`), SARIF's helpUri."""
    return "rule-" + rule_id.replace("/", "-")


def markdown_table() -> str:
    """The README's rule table, generated from the catalogue.

    `python -m cadence_engine.engine.rules` prints it.
    """
    rows = ["| rule | severity | what it means |", "| --- | --- | --- |"]
    for r in catalogue().values():
        summary = r.summary.replace("|", "\\|")
        rows.append(f'| <a id="{anchor(r.id)}"></a>`{r.id}` | {r.severity} | {summary} |')
    return "\n".join(rows) + "\n"
