"""The schema file itself: a valid 2020-12 schema, editor-friendly, every rule registered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft7Validator, Draft202012Validator

from cadence_engine.cli import cadence
from cadence_engine.engine.rules import catalogue
from cadence_engine.engine.schema import schema

from .conftest import CADENCES, ROOT

SCHEMA_PATH = ROOT / "schemas" / "cadence.schema.json"


def _subschemas(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key not in ("defaultSnippets", "examples", "const", "enum"):
                yield from _subschemas(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _subschemas(value, f"{path}/{i}")


def test_schema_is_valid_draft_2020_12_with_the_documented_id() -> None:
    Draft202012Validator.check_schema(schema())
    assert schema()["$id"] == "https://cadence-engine.example/schemas/cadence.schema.json"
    assert json.loads(SCHEMA_PATH.read_text(encoding="utf-8")) == schema()


def test_every_x_rule_is_in_the_catalogue() -> None:
    rules = catalogue()
    named = {s["x-rule"] for _, s in _subschemas(schema()) if "x-rule" in s}
    assert named and named <= set(rules)


def test_every_property_is_documented_for_editors() -> None:
    definitions = schema()["$defs"]
    missing = []
    for where, sub in _subschemas(schema()):
        if where.startswith(("#/$defs/firstStep", "#/properties/steps/allOf/0/unevaluatedItems")):
            continue  # only narrows the step's keys, documented at #/$defs/step
        for key, prop in sub.get("properties", {}).items():
            ref = prop.get("$ref", "")
            documented = definitions[ref.rsplit("/", 1)[1]] if len(prop) == 1 and ref else prop
            missing += [
                f"{where}/properties/{key}: {doc}"
                for doc in ("title", "description", "markdownDescription")
                if doc not in documented
            ]
    assert missing == []


def test_degrades_for_draft_07_editors() -> None:
    # A draft-07 editor ignores prefixItems and applies `items` to every step: it must
    # accept the first step's options, and never be `false`.
    steps = schema()["properties"]["steps"]
    assert steps["items"] is not False and steps["items"] == {"$ref": "#/$defs/step"}
    draft7 = dict(schema(), **{"$schema": "http://json-schema.org/draft-07/schema#"})
    example = _yaml(CADENCES / "heads-of-platform.yaml")
    assert list(Draft7Validator(draft7).iter_errors(example)) == []


def _yaml(path: Path) -> Any:
    from cadence_engine.engine.loader import load_data

    return load_data(path)


@pytest.mark.parametrize("path", sorted(CADENCES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_cadences_carry_the_schema_modeline(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schemas/cadence.schema.json"
    assert (path.parent / "../schemas/cadence.schema.json").resolve() == SCHEMA_PATH


def test_cadence_schema_prints_the_packaged_schema() -> None:
    result = CliRunner().invoke(cadence, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == schema()


VALID_CASES = sorted((ROOT / "tests" / "cases" / "validate" / "valid").glob("*.yaml"))


@pytest.mark.parametrize(
    "path", sorted(CADENCES.glob("*.yaml")) + VALID_CASES, ids=lambda p: p.name
)
def test_plain_validators_accept_every_valid_cadence(path: Path) -> None:
    # The editor story: a standard validator without our keywords accepts valid files,
    # in draft 2020-12 and in a draft-07 editor.
    data = _yaml(path)
    draft7 = dict(schema(), **{"$schema": "http://json-schema.org/draft-07/schema#"})
    assert list(Draft202012Validator(schema()).iter_errors(data)) == []
    assert list(Draft7Validator(draft7).iter_errors(data)) == []


def test_plain_validator_rejects_choose_at_launch_after_the_first_step() -> None:
    def steps(*sends: str) -> dict[str, Any]:
        return {
            "cadence": 1,
            "name": "n",
            "sender": {"name": "s", "email": "s@a.example"},
            "templates": {"t": {"subject": "s", "body": "b"}},
            "steps": [
                {"id": f"s{i}", "day": i + 1, "email": {"template": "t", "send": send}}
                for i, send in enumerate(sends)
            ],
        }

    plain = Draft202012Validator(schema())
    assert plain.is_valid(steps("choose_at_launch", "task"))
    assert not plain.is_valid(steps("task", "choose_at_launch"))


@pytest.mark.parametrize("path", sorted(CADENCES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_examples_pass_the_schema_alone_in_a_yaml_1_1_loader(path: Path) -> None:
    # What an editor or CI that knows only the schema sees: PyYAML reads an unquoted
    # 2026-12-25 as a date object, which the schema's string type refuses.
    import yaml

    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = list(Draft202012Validator(schema()).iter_errors(document))
    assert [e.message for e in errors] == []
