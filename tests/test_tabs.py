"""Tabs in cadence files: a tab that separates is read as YAML says, in one pass.

YAML lets a tab separate a value from its key, an indicator or a comment
(`daily_limit:<TAB>50`); libyaml reads that, ruamel's scanner refuses it, so ruamel is
given those tabs as spaces. A tab inside a plain value (`a: b<TAB>c`) is part of the
value and is never turned into a space; a tab that indents a line is a finding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml as pyyaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.reader import Reader
from ruamel.yaml.scanner import ScannerError

from cadence_engine.engine import fmt, loader
from cadence_engine.engine.loader import LoadProblem, parse, separating_tabs_as_spaces
from cadence_engine.engine.validate import validate_text

from .conftest import ROOT

EVERY_OPTION = ROOT / "tests" / "cases" / "validate" / "valid" / "every-option.yaml"


def _libyaml(text: str) -> Any:
    return pyyaml.load(text, Loader=pyyaml.CSafeLoader)  # the C safe loader


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts handed to ruamel's (pure-Python) reader: one per scan, parse or load."""
    texts: list[str] = []
    stream = Reader.stream

    def read(self: Reader, value: Any) -> None:
        if value is not None:
            texts.append(value)
        stream.fset(self, value)

    monkeypatch.setattr(Reader, "stream", property(stream.fget, read))
    return texts


def test_a_file_of_800_separating_tabs_is_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The repair used to scan the whole file again after each tab (quadratic: 28 s for
    # this file in `cadence validate`), in the loader and again for the position table.
    text = "".join(f"k{i}:\t{i}\n" for i in range(800))
    reads = _count_reads(monkeypatch)
    assert parse(text) == {f"k{i}": i for i in range(800)}
    assert reads == []  # libyaml read it: no ruamel pass at all
    _, findings = validate_text(text, "t.yaml")
    assert len(reads) == 2  # the position table: one repair scan, one round-trip load
    assert reads[1] == text.replace("\t", " ")
    unknown = [f for f in findings if f.path == ("k799",)]
    assert [(f.line, f.col, f.rule) for f in unknown] == [(800, 1, "schema/unknown-key")]


@pytest.mark.parametrize(
    "text",
    [
        "a: b\tc\n",
        "a: b \tc\n",
        "a:\tb\tc\t# a note\n",
        "a: b\t- c\n",
        "a: b\t:c\n",
        "a: b\n  c\td\n",
        "a\tb: c\n",
        "a: [b\tc]\n",
    ],
)
def test_a_tab_inside_a_plain_value_is_kept_as_libyaml_reads_it(text: str) -> None:
    data = parse(text)
    assert data == _libyaml(text)
    assert any("\t" in t for t in _texts(data))  # never read as a space


def _texts(data: Any) -> Any:
    if isinstance(data, dict):
        for key, value in data.items():
            yield key
            yield from _texts(value)
    elif isinstance(data, list):
        for value in data:
            yield from _texts(value)
    elif isinstance(data, str):
        yield data


def test_a_cadence_keeps_a_tab_in_its_name_and_finds_positions_around_it() -> None:
    text = EVERY_OPTION.read_text(encoding="utf-8")
    tabbed = text.replace("name: Every option", "name:\tEvery\toption").replace(
        "daily_limit: 200", "daily_limit:\t-5"
    )
    assert parse(tabbed)["name"] == "Every\toption"
    _, findings = validate_text(tabbed, "t.yaml")
    limit = [f for f in findings if f.path == ("settings", "daily_limit")]
    line = next(n for n, t in enumerate(tabbed.splitlines(), 1) if "daily_limit" in t)
    assert [(f.line, f.col) for f in limit] == [(line, 16)]


def test_a_plain_value_tab_the_full_loader_must_read_is_refused_not_changed() -> None:
    # An alias sends the file to ruamel, which cannot read a tab in a plain value: it is
    # refused at the tab rather than loaded as 'b c'.
    problem = parse("a: &x b\tc\nd: *x\n")
    assert problem == LoadProblem("yaml/syntax", f"YAML syntax error: {loader.VALUE_TAB}", 1, 8)
    # A file refused for another reason is refused for that reason, as before.
    duplicate = parse("a: b\tc\na: 2\n")
    assert isinstance(duplicate, LoadProblem)
    assert (duplicate.rule, duplicate.line, duplicate.col) == ("yaml/duplicate-key", 2, 1)


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("a:\t1\n", {"a": 1}),
        ("a: 1\t# note\n", {"a": 1}),
        ("key\t: v\n", {"key": "v"}),
        ("a:\n  -\t1\n  -\t2\n", {"a": [1, 2]}),  # libyaml refuses `-<TAB>`; ruamel reads it
        ("? a\n:\tb\n", {"a": "b"}),
        ("a: &x\t1\nb: *x\n", {"a": 1, "b": 1}),
        ("a: !!str\t1\n", {"a": "1"}),
        ("a: |\t# note\n  x\ty\n", {"a": "x\ty\n"}),
        ("a: >-\t\n  x\n", {"a": "x"}),
        ("%YAML\t1.2\t# v\n---\na: 1\n", {"a": 1}),
        ("a: 'x\ty'\t# quoted\n", {"a": "x\ty"}),
    ],
)
def test_separating_tabs_are_read_as_spaces(text: str, data: Any) -> None:
    assert parse(text) == data


def test_a_tab_that_indents_is_still_a_finding() -> None:
    problem = parse("a: 1\n\tb: 2\n")
    assert problem == LoadProblem(
        "yaml/syntax", "YAML syntax error: a tab cannot indent YAML; indent with spaces", 2, 1
    )


def test_fmt_turns_separating_tabs_into_spaces_and_refuses_a_plain_value_tab(
    tmp_path: Path,
) -> None:
    assert fmt.format_text("name:\tx\t# c\n") == "name: x # c\n"
    path = tmp_path / "c.yaml"
    path.write_text("cadence: 1\nname: b\tc\n", encoding="utf-8")
    changed, problems = fmt.format_paths([path], write=True)
    assert changed == []
    assert problems == [f"{path}:2:8: not formatted: {loader.VALUE_TAB} [yaml/syntax]"]
    assert path.read_text(encoding="utf-8") == "cadence: 1\nname: b\tc\n"


def _per_error_rescan(text: str) -> str:
    """The repair this replaced: scan, turn the tab ruamel stops at into a space, scan
    the whole text again (once per tab), until it stops elsewhere or at an indent."""
    yaml = YAML(typ="safe", pure=True)
    for _ in range(text.count("\t")):
        try:
            for _token in yaml.scan(text):
                pass
        except ScannerError as exc:
            index = getattr(exc.problem_mark, "index", -1)
            if not (0 <= index < len(text) and text[index] == "\t"):
                return text
            if not text[text.rfind("\n", 0, index) + 1 : index].strip():
                return text
            text = text[:index] + " " + text[index + 1 :]
            continue
        except YAMLError:
            return text
        return text
    return text


_PIECES = st.sampled_from(
    [
        "a",
        "b:",
        ": ",
        "- ",
        "?",
        "\t",
        "\t",
        "\t\t",
        " ",
        "\n",
        "\n  ",
        "\r\n",
        "\n\t",
        " #c",
        "#",
        "|",
        ">-",
        "|+2",
        "!",
        "!!",
        "!a!",
        "%YAML",
        "%TAG",
        " 1.2",
        " !e! ",
        "tag:x",
        "\n---",
        '"q',
        "'",
        "[",
        "]",
        "{",
        "}",
        ",",
        "&a",
        "*a",
        "x\ty",
    ]
)
_TABBED = st.lists(_PIECES, max_size=25).map("".join)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_TABBED)
@example("a\n  x\ty")  # ruamel stops at the tab for a key that never gets its ':'
@example("%TAG !ab\t! tag:x\n---\na: 1\n")
@example("a: !a\tb!c\n")
def test_the_one_pass_repair_matches_the_per_error_rescan(text: str) -> None:
    # Every refused file keeps its message and position: with tabs in values too (what
    # the position table uses, and what the loader falls back to), the text is exactly
    # the one the old repair gave.
    assert separating_tabs_as_spaces(text, in_values=True) == _per_error_rescan(text)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_TABBED)
def test_separating_tabs_only_never_touch_a_value(text: str) -> None:
    # Only separators become spaces: the repaired text differs from the full one only
    # where the full one also turned a tab inside a plain value into a space.
    repaired = separating_tabs_as_spaces(text)
    every = separating_tabs_as_spaces(text, in_values=True)
    changed = [i for i, (a, b) in enumerate(zip(text, repaired, strict=True)) if a != b]
    assert all(every[i] == " " for i in changed)
