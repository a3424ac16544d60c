"""The loader never raises on bad input: it returns plain data or a LoadProblem, and the
whole validation returns findings or a cadence, for any text and any YAML-shaped data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cadence_engine.engine.loader import LoadProblem, Positions, decode, parse
from cadence_engine.engine.validate import validate_text

from .conftest import CADENCES

KEYS = st.sampled_from(
    [
        "cadence",
        "name",
        "sender",
        "steps",
        "templates",
        "settings",
        "id",
        "day",
        "email",
        "call",
        "send",
        "template",
        "follow_up",
        "at",
        "notes",
        "subject",
        "body",
        "title",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "choose_at_launch",
            "task",
            "same_time_as_previous",
            "09:00",
            "{{ contact.x }}",
            "{% if %}",
            "2026-02-30",
        ]
    ),
)
YAML_SHAPED = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(KEYS, st.text(max_size=5)), inner, max_size=6),
    ),
    max_leaves=40,
)


def _check(text: str) -> None:
    cadence, findings = validate_text(text, "t.yaml")
    assert cadence is not None or findings
    for f in findings:
        assert f.line >= 1 and f.col >= 1 and f.rule and f.message


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_gives_findings_or_a_cadence(text: str) -> None:
    _check(text)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(YAML_SHAPED)
def test_any_yaml_shaped_data_gives_findings_or_a_cadence(data: Any) -> None:
    from io import StringIO

    from ruamel.yaml import YAML

    stream = StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(data, stream)
    _check(stream.getvalue())


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_name_the_bad_byte(raw: bytes) -> None:
    result = decode(raw)
    assert isinstance(result, str) or (result.line >= 1 and result.col >= 1)


def test_dates_stay_text_and_keys_become_text() -> None:
    assert parse("d: 2026-12-25\n2: x\ntrue: y\n") == {"d": "2026-12-25", "2": "x", "true": "y"}


def test_recursive_alias_is_refused() -> None:
    problem = parse("a: &a [*a]\n")
    assert isinstance(problem, LoadProblem) and problem.rule == "yaml/aliases"


def test_positions_point_into_a_block_scalar(example_cadence_path: Path) -> None:
    text = example_cadence_path.read_text(encoding="utf-8")
    positions = Positions(text)
    line, col = positions.locate(("templates", "intro", "body"), text_pos=(3, 0))
    assert text.splitlines()[line - 1].strip().startswith("Platform teams of")
    assert col == 7
    assert positions.locate(("steps", 3, "email", "follow_up"), at_key=True) == (59, 72)


def test_examples_parse_to_plain_data() -> None:
    for path in CADENCES.glob("*.yaml"):
        assert isinstance(parse(path.read_text(encoding="utf-8")), dict)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=200), YAML_SHAPED.map(lambda d: _dump(d))))
@example("0\n\t")  # a tab-only last line: libyaml read it, ruamel refuses it
@example("a: 1\n  \tb: 2\n")
@example("a:\t1\nb: c\t# note\n")
@example("a: b\tc\n")
@example("{a\ta}")
def test_fast_path_agrees_with_the_full_safe_loader(text: str) -> None:
    from ruamel.yaml.error import YAMLError

    from cadence_engine.engine import yaml_events
    from cadence_engine.engine.loader import (
        _safe_yaml,
        plain,
        separating_tabs_as_spaces,
        tab_in_value,
    )

    # libyaml reads the text as written; ruamel gets it with separating tabs as spaces
    # (valid YAML its scanner refuses), as the loader gives it when it falls back.
    try:
        fast = yaml_events.load(text)
    except yaml_events.Unsupported:
        return
    try:
        full = plain(_safe_yaml().load(separating_tabs_as_spaces(text)))
    except YAMLError as exc:
        # Only for a tab inside a plain value, which ruamel cannot read (in a flow
        # collection it splits the value) and the repair must not turn into a space.
        assert _tabs_as_spaces(fast) != fast
        if tab_in_value(exc):  # in block context: with it as a space, the rest agrees
            spaced = plain(_safe_yaml().load(separating_tabs_as_spaces(text, in_values=True)))
            assert _tabs_as_spaces(fast) == _tabs_as_spaces(spaced)
        return
    assert fast == full


def _tabs_as_spaces(data: Any) -> Any:
    if isinstance(data, str):
        return data.replace("\t", " ")
    if isinstance(data, dict):
        return {_tabs_as_spaces(k): _tabs_as_spaces(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_tabs_as_spaces(v) for v in data]
    return data


def _dump(data: Any) -> str:
    from io import StringIO

    from ruamel.yaml import YAML

    stream = StringIO()
    YAML(typ="safe", pure=True).dump(data, stream)
    return stream.getvalue()


def test_fast_path_is_taken_for_the_examples_and_refuses_aliases() -> None:
    from cadence_engine.engine import yaml_events

    for path in CADENCES.glob("*.yaml"):
        assert isinstance(yaml_events.load(path.read_text(encoding="utf-8")), dict)
    for text in (
        "a: &x 1\nb: *x\n",
        "a: 1\na: 2\n",
        "a: !!str 1\n",
        "1: x\n",
        "%YAML 1.1\n---\na: 1\n",
    ):
        try:
            yaml_events.load(text)
        except yaml_events.Unsupported:
            continue
        raise AssertionError(f"fast path accepted {text!r}")


@pytest.mark.parametrize(
    ("text", "rule", "words"),
    [
        ("a: 1\nb: {x: 1}\nb: {x: 2}\n", "yaml/duplicate-key", "duplicate key 'b': this mapping"),
        ("a: 1\n\tb: 2\n", "yaml/syntax", "a tab cannot indent YAML; indent with spaces"),
        ("a: 1\n---\na: 2\n", "yaml/syntax", "holds one YAML document"),
        ("a: !!python/object:os.system x\n", "yaml/tag", "'!!python/object:os.system' is not"),
    ],
    ids=["duplicate-key", "tab", "two-documents", "python-tag"],
)
def test_load_problems_are_said_in_plain_words(text: str, rule: str, words: str) -> None:
    problem = parse(text)
    assert isinstance(problem, LoadProblem)
    assert problem.rule == rule and words in problem.message


@pytest.mark.parametrize(
    "text",
    [
        "cadence: 1\nname: &n a\ndescription: &n b\nsteps: *n\n",  # reused anchor name
        "%YAML 1.1\n---\ncadence: 1e3\n",  # ruamel's YAML 1.1 float warning
        "%YAML 1.3\n---\ncadence: 1\n",  # ruamel asserts on the version
    ],
    ids=["reused-anchor", "yaml-1.1-float", "yaml-1.3"],
)
def test_valid_or_odd_yaml_never_warns_or_raises(text: str) -> None:
    # Tests run with -W error, so a ruamel warning would fail here as it would print in CI.
    _, findings = validate_text(text, "odd.yaml")
    assert findings and all(f.line >= 1 for f in findings)


def test_a_yaml_1_1_file_does_not_change_how_the_next_file_is_read() -> None:
    assert parse("%YAML 1.1\n---\na: yes\n") == {"a": True}
    assert parse("a: yes\non: 1\n") == {"a": "yes", "on": 1}
