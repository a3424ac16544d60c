"""The loader's fast path reads exactly what ruamel reads, from libyaml's events or ruamel's.

libyaml (YAML 1.1, C) only tokenises; ruamel's YAML 1.2 resolver types every plain
scalar. Whatever libyaml accepts must load to the data ruamel's own loader gives, and
a text either refuses must not become data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cadence_engine.engine import loader, yaml_events

from .conftest import CADENCES, ROOT

TEXTS = sorted([*CADENCES.glob("*.yaml"), *(ROOT / "tests" / "cases").rglob("*.yaml")], key=str)
REFUSED = object()


def reference(text: str) -> Any:
    """What ruamel alone makes of the text: its fast path, else its full safe loader."""
    try:
        return yaml_events.load(text, use_libyaml=False)
    except yaml_events.Unsupported:
        pass
    try:
        with loader.quiet_anchors():
            data = loader._new_safe_yaml().load(text)
    except Exception:
        return REFUSED
    return loader.plain(data)


def libyaml_or_skip(text: str) -> Any:
    if yaml_events._libyaml() is None:
        pytest.skip("libyaml is missing: pip install PyYAML (its wheels include libyaml)")
    try:
        return yaml_events.load(text)
    except yaml_events.Unsupported:
        return None


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_file_loads_the_same(path: Path) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    fast = libyaml_or_skip(text)
    if fast is not None:
        assert fast == reference(text)


LINES = (CADENCES / "heads-of-platform.yaml").read_text(encoding="utf-8").splitlines()
EDITS = st.lists(
    st.tuples(
        st.integers(0, len(LINES) - 1),
        st.sampled_from(["drop", "dup", "indent", "dedent", "colon", "quote", "dash", "hash"]),
    ),
    max_size=4,
)


def edited(edits: list[tuple[int, str]]) -> str:
    lines = list(LINES)
    for index, edit in edits:
        index %= len(lines)
        line = lines[index]
        lines[index : index + 1] = {
            "drop": [],
            "dup": [line, line],
            "indent": [" " + line],
            "dedent": [line[1:]],
            "colon": [line + ": x"],
            "quote": [line.replace(" ", ' "', 1)],
            "dash": ["- " + line],
            "hash": [line.replace(" ", " #", 1)],
        }[edit]
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None)
@given(EDITS)
@example(edits=[(48, "drop"), (48, "indent")])  # a block scalar's first line is one space
def test_edited_files_load_the_same_or_fall_back(edits: list[tuple[int, str]]) -> None:
    text = edited(edits)
    fast = libyaml_or_skip(text)
    if fast is not None:
        assert fast == reference(text)
