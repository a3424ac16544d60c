"""`cadence fmt`: the canonical layout of a cadence file, comments kept (ruamel round-trip).

Canonical means: top-level keys in the documented order, two-space mapping indent,
sequences indented under their key (`  - …`), flow/block style and quoting as written,
no line wrapping. Formatting twice changes nothing.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from . import loader

TOP_LEVEL_ORDER = (
    "cadence",
    "name",
    "description",
    "sender",
    "contact_fields",
    "settings",
    "templates",
    "steps",
)


def _yaml() -> YAML:
    # The stock round-trip constructor: its timestamps dump back exactly as written.
    yaml = YAML(typ="rt", pure=True)
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never re-wrap a long flow mapping or string
    return yaml


def format_text(text: str) -> str:
    """The canonical form of cadence text, in the line ending its first line uses (every
    line the same: a mixed file is not canonical); raises YAMLError (or ValueError, for a
    date that does not exist) for text that cannot be read."""
    ending = line_ending(text)
    # Separating tabs become spaces; a tab inside a plain value is kept, so ruamel
    # refuses it (a space would change the value).
    lf = loader.separating_tabs_as_spaces(text.replace("\r\n", "\n"))
    formatted = _format_lf(lf)
    return formatted if ending == "\n" else formatted.replace("\n", ending)


def line_ending(text: str) -> str:
    """`\r\n` when the first line ends so, else `\n`."""
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def _format_lf(text: str) -> str:
    yaml = _yaml()
    with loader.quiet_anchors():
        data = yaml.load(text)
    if data is None:
        return text
    _order_top_level(data)
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _order_top_level(data: Any) -> None:
    if not hasattr(data, "move_to_end"):
        return
    rank = {key: i for i, key in enumerate(TOP_LEVEL_ORDER)}
    keys = list(data.keys())
    wanted = sorted(keys, key=lambda k: rank.get(k, len(rank)))
    if wanted == keys:
        return  # already canonical: leave comment anchoring untouched
    for key in wanted:
        data.move_to_end(key)


def format_paths(paths: Iterable[Path], *, write: bool) -> tuple[list[Path], list[str]]:
    """(files that change, problems); with `write` the changed files are rewritten."""
    changed: list[Path] = []
    problems: list[str] = []
    for path in paths:
        try:
            text = loader.decode(path.read_bytes())
        except OSError as exc:
            problems.append(f"{path}:1:1: cannot read: {exc.strerror or exc} [file/unreadable]")
            continue
        if isinstance(text, loader.LoadProblem):
            problems.append(f"{path}:{text.line}:{text.col}: {text.message} [{text.rule}]")
            continue
        limited = loader.limit_problem(text, size_checked=True)  # decode checked the bytes
        if limited is not None:  # before the round-trip loader, which recurses per level
            problems.append(
                f"{path}:{limited.line}:{limited.col}: not formatted: {limited.message} "
                f"[{limited.rule}]"
            )
            continue
        try:
            formatted = format_text(text)
        except (YAMLError, ValueError, AssertionError, RecursionError) as exc:
            problems.append(_not_formatted(path, text, exc))
            continue
        if formatted != text:
            changed.append(path)
            if write:
                path.write_text(formatted, encoding="utf-8")
    return changed, problems


def _not_formatted(path: Path, text: str, exc: Exception) -> str:
    # The loader names the reason (duplicate key, tab, bad tag) the way `validate` does.
    problem = loader.parse(text)
    if isinstance(problem, loader.LoadProblem):
        return (
            f"{path}:{problem.line}:{problem.col}: not formatted: {problem.message} "
            f"[{problem.rule}]"
        )
    if isinstance(exc, ValueError):
        # The round-trip loader builds dates, so 2026-02-30 stops it; `validate` reads such
        # a value as a string and names it at its line and column: say what it says.
        from .validate import validate_text

        _, findings = validate_text(text, str(path))
        for f in findings:
            if f.rule == "date/format":
                return f"{f.location()}: not formatted: {f.message} [{f.rule}]"
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else f"{path}:1:1"
    if loader.tab_in_value(exc):
        # Valid YAML the round-trip loader cannot read; a space would change the value.
        return f"{where}: not formatted: {loader.VALUE_TAB} [yaml/syntax]"
    return f"{where}: not formatted, the YAML does not parse [yaml/syntax]"
