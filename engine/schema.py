"""The packaged JSON Schema, its validator with cadence-engine's custom keywords, and the
translation of validation errors into rule findings (without positions yet).

Standard keywords check what editors can check too; the custom keywords (`x-cadence-steps`,
`x-cadence-references`, `x-iana-timezone`, `x-time-range`) run the rules in
`engine.rules`, so one `iter_errors` pass yields every finding.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from jsonschema.protocols import Validator

from .findings import Rule, Severity, did_you_mean
from .rules import (
    Issue,
    Path,
    cadence_checks,
    choose_at_launch_later,
    schema_rules,
    send_window_order,
    sender_address,
    step_checks,
    timezone_iana,
)

SCHEMA_FILE = "cadence.schema.json"

# Modules whose rules the schema names with `x-rule`: imported so the ids are registered.
X_RULE_MODULES = (schema_rules, choose_at_launch_later)

# When the first-step schema and the general step schema both fail on one value, the
# general finding says enough; these first-step rules are then left out.
SHADOWED_BY_ANY_OTHER = frozenset({"day/first-step", "follow-up/first-step"})


def schema_text() -> str:
    return files("cadence_engine.schemas").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@dataclass(frozen=True, slots=True)
class RawFinding:
    """A finding located by its JSON path; engine.validate adds file, line and column."""

    rule: str
    severity: Severity
    message: str
    path: Path
    at_key: bool = False
    text_pos: tuple[int, int] | None = None


class RuleError(ValidationError):
    """A ValidationError carrying the Issue of a custom-keyword rule."""

    def __init__(self, issue: Issue) -> None:
        super().__init__(issue.message, path=issue.path)
        self.issue = issue


KeywordFn = Callable[[Validator, Any, Any, dict[str, Any]], Iterator[ValidationError]]


def _keyword(checks: Callable[[], Iterator[Callable[[Any], Iterator[Issue]]]]) -> KeywordFn:
    def run(validator: Validator, value: Any, instance: Any, subschema: dict[str, Any]) -> Any:
        if value is not True:
            return
        for check in checks():
            for issue in check(instance):
                yield RuleError(issue)

    return run


def _root_checks() -> Iterator[Callable[[Any], Iterator[Issue]]]:
    def guarded(check: Callable[[dict[str, Any]], Iterator[Issue]]) -> Any:
        return lambda doc: check(doc) if isinstance(doc, dict) else iter(())

    for check in cadence_checks():
        yield guarded(check)


def _is_whole_number(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 2.0 as an integer; YAML `day: 2.0` is a float that every rule
    # comparing days would skip, so the CLI wants the number written whole.
    return isinstance(instance, int) and not isinstance(instance, bool)


@functools.cache
def validator() -> Validator:
    """The schema's validator, built once per process (the schema is packaged, immutable)."""
    cls = validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator,
        {
            "x-cadence-steps": _keyword(step_checks),
            "x-cadence-references": _keyword(_root_checks),
            "x-iana-timezone": _keyword(lambda: iter((timezone_iana.check,))),
            "x-time-range": _keyword(lambda: iter((send_window_order.check,))),
            "x-sendable-address": _keyword(lambda: iter((sender_address.check,))),
        },
        type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_whole_number),
    )
    instance: Validator = cls(schema(), format_checker=FormatChecker(formats=("date",)))
    return instance


def check(data: Any) -> list[RawFinding]:
    """Every schema and custom-rule finding for plain (JSON-like) data."""
    raw = [f for error in validator().iter_errors(data) for f in _findings(error)]
    return _without_shadowed(raw)


def _without_shadowed(raw: list[RawFinding]) -> list[RawFinding]:
    taken = {(f.path, f.at_key) for f in raw if f.rule not in SHADOWED_BY_ANY_OTHER}
    unique: dict[tuple[str, Path, bool, str], RawFinding] = {}
    for f in raw:
        if f.rule in SHADOWED_BY_ANY_OTHER and (f.path, f.at_key) in taken:
            continue
        unique.setdefault((f.rule, f.path, f.at_key, f.message), f)
    return list(unique.values())


def label(path: Path) -> str:
    """`steps[2].email.send` for a JSON path; `the file` for the root."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the cadence"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_EXPECTED = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "nothing",
}


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _findings(error: ValidationError) -> Iterator[RawFinding]:
    path: Path = tuple(error.absolute_path)
    if isinstance(error, RuleError):
        issue = error.issue
        yield RawFinding(
            issue.rule.id, issue.severity, issue.message, path, issue.at_key, issue.text_pos
        )
        return
    sub = error.schema if isinstance(error.schema, dict) else {}
    keyword, instance = str(error.validator), error.instance
    if keyword == "unevaluatedItems" and isinstance(instance, list):
        yield from _unevaluated_items(sub, instance, path)
        return
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = list(sub.get("properties", {}))
        for key in instance:
            if key not in known:
                hint = did_you_mean(str(key), known) or (
                    f"; allowed: {', '.join(known)}" if known else ""
                )
                yield _raw(
                    schema_rules.UNKNOWN_KEY,
                    f"{label(path)}: unknown key '{key}'{hint}",
                    (*path, key),
                    at_key=True,
                )
        return
    if keyword == "required" and isinstance(instance, dict):
        for key in sub.get("required", ()):
            if key not in instance:
                yield _raw(
                    schema_rules.REQUIRED_KEY,
                    f"{label(path)}: missing required key '{key}'",
                    path,
                    at_key=True,
                )
        return
    rule_id = sub.get("x-rule")
    if isinstance(rule_id, str):
        from .findings import RULES

        if keyword == "oneOf" and not isinstance(instance, dict):
            return  # not a mapping at all: its schema/type finding says so
        message = f"{label(path)}: {sub.get('x-message', error.message)}"
        if keyword == "oneOf" and isinstance(instance, dict):
            kinds = [k for k in ("email", "call", "inmail", "custom") if k in instance]
            message += f"; found {' and '.join(kinds) if kinds else 'none'}"
        elif keyword != "not" and not isinstance(instance, dict | list):
            message += f" (got {_shown(instance)})"  # a `not` failure names the value itself
        sibling = sub.get("x-finding-at-key")
        if isinstance(sibling, str) and path:
            # The key whose presence makes this value wrong is where the fix goes.
            yield _raw(RULES[rule_id], message, (*path[:-1], sibling), at_key=True)
            return
        yield _raw(RULES[rule_id], message, path)
        return
    yield _raw(*_generic(keyword, error, path), path)


def _unevaluated_items(sub: dict[str, Any], items: list[Any], path: Path) -> Iterator[RawFinding]:
    # jsonschema reports only "unevaluated items are not allowed"; the later-step rules
    # (`unevaluatedItems` of `steps`) deserve their own findings, so the failing items are checked
    # against that schema again.
    item_schema = sub.get("unevaluatedItems", True)
    skipped = len(sub.get("prefixItems", ()))
    check = validator().evolve(schema=item_schema)
    for index in range(skipped, len(items)):
        for error in check.iter_errors(items[index]):
            error.path.extendleft(reversed((*path, index)))
            yield from _findings(error)


def _generic(keyword: str, error: ValidationError, path: Path) -> tuple[Rule, str]:
    where = label(path)
    value: Any = error.validator_value
    if keyword == "type":
        expected = " or ".join(
            _EXPECTED.get(t, t) for t in ([value] if isinstance(value, str) else value)
        )
        return schema_rules.TYPE, f"{where}: expected {expected}, got {_json_type(error.instance)}"
    if keyword in ("enum", "const"):
        allowed = value if keyword == "enum" else [value]
        return schema_rules.VALUE, (
            f"{where}: {_shown(error.instance)} is not allowed; use "
            + ", ".join(_shown(v) for v in allowed)
        )
    messages = {
        "minLength": f"{where}: must not be empty",
        "minimum": f"{where}: must be at least {value}",
        "minItems": f"{where}: needs at least {value} item(s)",
        "uniqueItems": f"{where}: has a duplicate item",
        "minProperties": f"{where}: must not be empty",
    }
    if keyword in messages:
        return schema_rules.VALUE, messages[keyword]
    return schema_rules.INVALID, f"{where}: {error.message}"


def _raw(rule: Rule, message: str, path: Path, *, at_key: bool = False) -> RawFinding:
    return RawFinding(rule.id, rule.severity, message, path, at_key)
