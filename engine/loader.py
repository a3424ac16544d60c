"""YAML text → plain data, and (only when needed) a position table. Safe loading only.

Two passes by design: the common clean file is read once with ruamel's safe loader into
plain data; only a file that has findings is read again with the round-trip loader, whose
line/column marks locate each finding. ruamel's round-trip loader is the slower one, so a
clean file never pays for it.

Safety: the safe constructor refuses arbitrary tags; aliases are bounded by counting the
values they expand to, so a 'billion laughs' file is a finding, not an out-of-memory.
Dates stay text (as JSON Schema and editors see them), checked by the schema's format.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import (
    ConstructorError,
    DuplicateKeyError,
    RoundTripConstructor,
    SafeConstructor,
)
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import ScalarEvent
from ruamel.yaml.reader import ReaderError

from . import input_checks, yaml_events
from .errors import InputError
from .rules import Path, yaml_rules

PathLike = str | os.PathLike[str]

MAX_VALUES = 100_000  # expanded scalars + collections; real cadences have a few hundred


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """Why the text could not become plain data, with a 1-based position."""

    rule: str
    message: str
    line: int = 1
    col: int = 1


class _TextDatesConstructor(SafeConstructor):
    """Keeps timestamps as the text written: `2026-13-45` becomes a date/format finding."""


_TextDatesConstructor.add_constructor(
    "tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str
)


class TextDatesRoundTrip(RoundTripConstructor):
    """The position pass must read every file the safe pass reads, dates included."""


TextDatesRoundTrip.add_constructor(
    "tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str
)


@contextlib.contextmanager
def quiet_anchors() -> Iterator[None]:
    """ruamel warns on stderr about valid YAML (a reused anchor name, where an alias takes
    the latest; `1e3` under `%YAML 1.1`), which a CLI must not print and `-W error`
    turns into a crash."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"ruamel\.yaml")
        yield


@functools.cache
def _safe_yaml() -> YAML:
    return _new_safe_yaml()


def _new_safe_yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _TextDatesConstructor
    return yaml


def decode(raw: bytes) -> str | LoadProblem:
    """UTF-8 bytes → text; a BOM is accepted, anything else names the first bad byte."""
    early = _raw_problem(raw)
    if early is not None:
        return early
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        return LoadProblem(
            yaml_rules.ENCODING.id,
            f"file is not UTF-8: byte 0x{raw[exc.start]:02x} cannot be decoded; "
            "save the file as UTF-8",
            line,
            col,
        )


def _raw_problem(raw: bytes) -> LoadProblem | None:
    """UTF-16 and over-long files, named before any decoding or parsing."""
    utf16 = input_checks.utf16_problem(raw[:256])
    if utf16 is not None:
        return LoadProblem(yaml_rules.ENCODING.id, f"{utf16}; save the file as UTF-8")
    too_big = input_checks.size_problem(len(raw))
    if too_big is not None:
        return LoadProblem(yaml_rules.LIMITS.id, too_big.message)
    return None


def limit_problem(text: str) -> LoadProblem | None:
    """The first limit of engine.limits the text breaks, before it is parsed."""
    found = input_checks.text_problem(text)
    if found is None:
        return None
    return LoadProblem(yaml_rules.LIMITS.id, found.message, found.line, found.col)


def _surrogates(text: str, data: Any) -> LoadProblem | None:
    found = input_checks.surrogate_problem(text, data)
    if found is None:
        return None
    return LoadProblem(yaml_rules.ENCODING.id, found.message, found.line, found.col)


def load_data(path: PathLike) -> Any:
    """Read and parse one YAML file into plain data; InputError names file:line:col."""
    try:
        raw = pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    text = decode(raw)
    data = parse(text) if isinstance(text, str) else text
    if isinstance(data, LoadProblem):
        raise InputError(f"{path}:{data.line}:{data.col}: {data.message} [{data.rule}]")
    return data


def parse(text: str) -> Any:
    """Plain data (dicts, lists, str, int, float, bool, None) or a LoadProblem."""
    limited = limit_problem(text)
    if limited is not None:
        return limited
    text = separating_tabs_as_spaces(text)
    try:
        fast = yaml_events.load(text)
    except yaml_events.Unsupported:
        fast = None
    if isinstance(fast, dict):
        # The common clean file: no node graph, no copy needed.
        return _surrogates(text, fast) or fast
    try:
        # A `%YAML 1.1` directive stays with the parser that read it: such a file gets
        # its own, so the next file is read as YAML 1.2 again.
        yaml = _new_safe_yaml() if yaml_events.DIRECTIVE.search(text) else _safe_yaml()
        with quiet_anchors():
            data = yaml.load(text)
    except DuplicateKeyError as exc:
        return _problem(yaml_rules.DUPLICATE_KEY.id, exc, "duplicate key")
    except ConstructorError as exc:
        return _problem(yaml_rules.TAG.id, exc, "YAML tag not allowed")
    except ReaderError as exc:
        return LoadProblem(
            yaml_rules.SYNTAX.id,
            f"character {exc.character!r} is not allowed in YAML",
            *_line_col(text, exc.position),
        )
    except YAMLError as exc:
        return _problem(yaml_rules.SYNTAX.id, exc, "YAML syntax error", text)
    except RecursionError:
        return LoadProblem(yaml_rules.SYNTAX.id, "YAML nesting is too deep to read")
    except AssertionError:
        # ruamel asserts on a `%YAML 1.3` (or any other unknown version) directive.
        return LoadProblem(
            yaml_rules.SYNTAX.id, "YAML version not supported: write YAML 1.2 (or 1.1)"
        )
    except (ValueError, TypeError, OverflowError) as exc:
        # ruamel's scalar constructors raise these for values its resolver misjudged.
        return LoadProblem(yaml_rules.SYNTAX.id, f"YAML value cannot be read: {exc}")
    if data is None:
        return LoadProblem(
            yaml_rules.EMPTY.id, "file is empty; a cadence needs cadence, name, sender and steps"
        )
    copied = plain(data)
    return copied if isinstance(copied, LoadProblem) else _surrogates(text, copied) or copied


def separating_tabs_as_spaces(text: str) -> str:
    """`daily_limit:<TAB>50` is valid YAML (a tab may separate a value from its key), but
    ruamel's scanner refuses it; each such tab becomes a space (same column, same data).
    A tab that indents a line stays, and gets its own finding."""
    if "\t" not in text:
        return text
    from ruamel.yaml.scanner import ScannerError

    for _ in range(text.count("\t")):
        try:
            for _token in _safe_yaml().scan(text):
                pass
        except ScannerError as exc:
            mark = exc.problem_mark
            index = getattr(mark, "index", -1)
            if not (0 <= index < len(text) and text[index] == "\t"):
                return text
            line_start = text.rfind("\n", 0, index) + 1
            if not text[line_start:index].strip():
                return text  # the tab indents the line
            text = text[:index] + " " + text[index + 1 :]
            continue
        except YAMLError:
            return text
        return text
    return text


def _line_col(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


# ruamel's wording for the commonest mistakes, said in the user's terms.
_PLAIN_WORDS = (
    (
        re.compile(r"found character '\\t' that cannot start any token"),
        "a tab cannot indent YAML; indent with spaces",
    ),
    (
        re.compile(r"found another document"),
        "a cadence file holds one YAML document; remove the second `---` and what follows",
    ),
)
_DUPLICATE = re.compile(r'found duplicate key "(.*)" with value', re.DOTALL)
_TAG = re.compile(r"for the tag '(.*)'")


def _problem(rule_id: str, exc: YAMLError, what: str, text: str = "") -> LoadProblem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None) if isinstance(exc, MarkedYAMLError) else None
    duplicate = _DUPLICATE.search(problem) if rule_id == yaml_rules.DUPLICATE_KEY.id else None
    plain_words = next((words for pattern, words in _PLAIN_WORDS if pattern.search(problem)), None)
    tag = _TAG.search(problem) if rule_id == yaml_rules.TAG.id else None
    if tag is not None:
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        message = (
            f"the YAML tag '{shown}' is not allowed: cadence files are loaded safely; "
            "write a plain value"
        )
    elif duplicate is not None:
        message = (
            f"duplicate key '{duplicate.group(1)}': this mapping already has it; "
            "remove or rename one"
        )
    elif plain_words is not None:
        message = f"{what}: {plain_words}"
    else:
        parser_text = f"{problem}" + (f" ({context})" if context else "")
        cause = likely_cause(text, problem, mark.line if mark is not None else None)
        message = (
            f"{what}: {cause}; the parser says: {parser_text}"
            if cause
            else (f"{what}: {parser_text}")
        )
    if mark is None:
        return LoadProblem(rule_id, message)
    return LoadProblem(rule_id, message, mark.line + 1, mark.column + 1)


def likely_cause(text: str, problem: str, line: int | None) -> str | None:
    """The usual mistake behind ruamel's structural errors, in the user's terms: a line
    indented differently from the key above it (`line` is 0-based), or None."""
    if line is None or not (
        "expected <block end>" in problem or "mapping values are not allowed" in problem
    ):
        return None
    lines = text.splitlines()
    if not 0 <= line < len(lines):
        return None
    here = lines[line]
    above = next(
        (
            n
            for n in range(line - 1, -1, -1)
            if lines[n].strip() and not lines[n].lstrip().startswith("#")
        ),
        None,
    )
    if above is None:
        return None
    indent = len(here) - len(here.lstrip(" "))
    key_indent = len(lines[above]) - len(lines[above].lstrip(" -"))
    if "mapping values are not allowed" in problem and indent == key_indent:
        return (
            f"line {line + 1} has a ':' where a value is not expected: a value that "
            "contains ': ' must be quoted"
        )
    if indent == key_indent:
        return None
    return (
        f"line {line + 1} starts in column {indent + 1} but the key above it (line {above + 1}) "
        f"in column {key_indent + 1}: keys of one mapping line up; indent line {line + 1} "
        f"like line {above + 1}, or nest it under a key that ends with ':'"
    )


class _TooBig(Exception):
    pass


def plain(data: Any) -> Any:
    """A copy with aliases expanded (bounded), keys as text; or a LoadProblem."""
    budget = [MAX_VALUES]
    try:
        return _copy(data, budget, ())
    except _TooBig as exc:
        return LoadProblem(yaml_rules.ALIASES.id, str(exc))
    except RecursionError:
        return LoadProblem(yaml_rules.SYNTAX.id, "YAML nesting is too deep to read")


def _copy(node: Any, budget: list[int], active: tuple[int, ...]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig(f"aliases expand to more than {MAX_VALUES:,} values; write the values out")
    if isinstance(node, dict | list):
        if id(node) in active:
            raise _TooBig("a YAML alias refers to the collection that contains it")
        inner = (*active, id(node))
        if isinstance(node, dict):
            return {_key(k): _copy(v, budget, inner) for k, v in node.items()}
        return [_copy(v, budget, inner) for v in node]
    return node


def _key(key: Any) -> Any:
    # JSON has text keys only; YAML `1:` or `true:` keys are compared as their text.
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


class Positions:
    """Line and column of any JSON path, from the round-trip loader's marks (1-based)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines()
        self._spans: dict[tuple[int, int], tuple[int, int]] | None = None
        try:
            yaml = YAML(typ="rt", pure=True)
            yaml.Constructor = TextDatesRoundTrip
            with quiet_anchors():
                self.root: Any = yaml.load(separating_tabs_as_spaces(text))
        except (YAMLError, ValueError, TypeError, RecursionError, AssertionError):
            self.root = None

    def locate(
        self, path: Path, *, at_key: bool = False, text_pos: tuple[int, int] | None = None
    ) -> tuple[int, int]:
        node, where = self.root, (1, 1)
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            found = self._child(node, part, key_mark=at_key and last)
            if found is None:
                return where
            node, where = found
        if text_pos is not None:
            return self._inside_scalar(node, where, text_pos)
        return where

    @staticmethod
    def _child(node: Any, part: Any, *, key_mark: bool) -> tuple[Any, tuple[int, int]] | None:
        lc = getattr(node, "lc", None)
        if lc is None:
            return None
        try:
            if isinstance(node, Mapping):
                key = part if part in node else next((k for k in node if _key(k) == part), None)
                if key is None:
                    return None
                line, col = lc.key(key) if key_mark else lc.value(key)
                return node[key], (line + 1, col + 1)
            if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                line, col = lc.item(part)
                return node[part], (line + 1, col + 1)
        except (KeyError, TypeError, AttributeError):
            return None
        return None

    def _inside_scalar(
        self, node: Any, where: tuple[int, int], text_pos: tuple[int, int]
    ) -> tuple[int, int]:
        """The file position of (line, col) inside the string value at `where`.

        A literal block (`|`) keeps its lines, so the mapping is exact. Any other style
        (folded `>`, quoted with `\\n` escapes, multi-line plain) rewraps the text, so the
        spot is found by searching the scalar's source for the word at that position.
        """
        from ruamel.yaml.scalarstring import LiteralScalarString

        line, col = text_pos
        if isinstance(node, LiteralScalarString):
            found = self._in_literal(where, line, col)
            if found is not None:
                return found
        if isinstance(node, str):
            found = self._in_source(node, where, line, col)
            if found is not None:
                return found
        if line == 1:
            quoted = (
                1
                if where[1] <= len(self.lines[where[0] - 1])
                and self.lines[where[0] - 1][where[1] - 1] in "\"'"
                else 0
            )
            return where[0], where[1] + quoted + max(col - 1, 0)
        return where

    def _in_literal(self, where: tuple[int, int], line: int, col: int) -> tuple[int, int] | None:
        # The mark is on the `|` indicator; the text's line 1 is the next file line, and
        # the block's indentation is that of its first non-blank line.
        file_line = where[0] + line
        if file_line > len(self.lines):
            return None
        content = [t for t in self.lines[where[0] : file_line] if t.strip()]
        if not content:
            return file_line, 1
        indent = len(content[0]) - len(content[0].lstrip(" "))
        if col:
            return file_line, indent + col
        source = self.lines[file_line - 1]
        return file_line, len(source) - len(source.lstrip()) + 1

    def _in_source(
        self, value: str, where: tuple[int, int], line: int, col: int
    ) -> tuple[int, int] | None:
        text_lines = value.split("\n")
        if not 1 <= line <= len(text_lines):
            return None
        current = text_lines[line - 1]
        start = col - 1 if col else len(current) - len(current.lstrip())
        offset = sum(len(t) + 1 for t in text_lines[: line - 1]) + start
        # The word at the spot, cut where the source could differ from the value (escapes,
        # quotes, a line break folded into a space).
        word = re.match(r"[^\s\\\"']{1,40}", value[offset:])
        span = self._scalar_span(where)
        if word is None or span is None:
            return None
        needle = word.group()
        nth = value[:offset].count(needle)
        source = self.text[span[0] : span[1]]
        at = -1
        for _ in range(nth + 1):
            at = source.find(needle, at + 1)
            if at < 0:
                return None
        return _line_col(self.text, span[0] + at)

    def _scalar_span(self, where: tuple[int, int]) -> tuple[int, int] | None:
        """(start, end) offsets in the text of the scalar that starts at `where`."""
        if self._spans is None:
            self._spans = {}
            yaml = YAML(typ="safe", pure=True)
            try:
                for event in yaml.parse(self.text):
                    if isinstance(event, ScalarEvent):
                        mark, end = event.start_mark, event.end_mark
                        self._spans[(mark.line + 1, mark.column + 1)] = (mark.index, end.index)
            except (YAMLError, AssertionError):
                pass
        return self._spans.get(where)
