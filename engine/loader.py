"""YAML text → plain data, and (only when needed) a position table. Safe loading only.

Two passes by design: the common clean file is read once with ruamel's safe loader into
plain data; only a file that has findings is read again with the round-trip loader, whose
line/column marks locate each finding. ruamel's round-trip loader is the slower one, so a
clean file never pays for it.

Safety: the safe constructor refuses arbitrary tags; aliases are bounded by counting the
values they expand to, so a 'billion laughs' file is a finding, not an out-of-memory.
Dates stay text (as JSON Schema and editors see them), checked by the schema's format.

Tabs: libyaml (the fast path) reads the text as written. ruamel's scanner refuses a tab
that only separates (`key:<TAB>value`), so it is given those as spaces, found in one
scan (`separating_tabs_as_spaces`); a tab inside a plain value is never made a space.
"""

from __future__ import annotations

import bisect
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
from ruamel.yaml.reader import Reader, ReaderError
from ruamel.yaml.scanner import Scanner, ScannerError

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


def limit_problem(text: str, *, size_checked: bool = False) -> LoadProblem | None:
    """The first limit of engine.limits the text breaks, before it is parsed
    (`size_checked`: it was decoded from bytes whose size `decode` checked)."""
    found = input_checks.text_problem(text, size_checked=size_checked)
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
    data = parse(text, size_checked=True) if isinstance(text, str) else text
    if isinstance(data, LoadProblem):
        raise InputError(f"{path}:{data.line}:{data.col}: {data.message} [{data.rule}]")
    return data


def parse(text: str, *, size_checked: bool = False) -> Any:
    """Plain data (dicts, lists, str, int, float, bool, None) or a LoadProblem
    (`size_checked`: the text is what `decode` gave, which checked the size)."""
    limited = limit_problem(text, size_checked=size_checked)
    if limited is not None:
        return limited
    try:
        # libyaml reads separating tabs (and a tab inside a plain value) as YAML says;
        # a tab-indented line is refused there (yaml_events.TAB_INDENT) and named below.
        fast = yaml_events.load(text)
    except yaml_events.Unsupported:
        fast = None
    if isinstance(fast, dict):
        # The common clean file: no node graph, no copy needed.
        return _surrogates(text, fast) or fast
    spots = _tab_spots(text)
    result = _full_load(_as_spaces(text, spots))
    if isinstance(result, LoadProblem):
        # ruamel cannot read a tab inside a plain value (`a: b<TAB>c`), which is left as
        # it is. Read with those tabs as spaces too: a file refused for another reason is
        # refused for it, as before; one that would load is refused at the first such tab
        # rather than loaded with its values changed.
        every = _tab_spots(text, in_values=True)
        if len(every) > len(spots):
            other = _full_load(_as_spaces(text, every))
            if isinstance(other, LoadProblem):
                return other
            first = min(set(every).difference(spots))
            return LoadProblem(
                yaml_rules.SYNTAX.id, f"YAML syntax error: {VALUE_TAB}", *_line_col(text, first)
            )
    return result


def _full_load(text: str) -> Any:
    """ruamel's safe loader: plain data, or the LoadProblem that names why not."""
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


def separating_tabs_as_spaces(text: str, *, in_values: bool = False) -> str:
    """`daily_limit:<TAB>50` is valid YAML (a tab may separate a value from its key, an
    indicator or a comment), but ruamel's scanner refuses it; each such tab becomes a
    space (same column, same data). A tab that indents a line stays, and gets its own
    finding. A tab inside a plain value (`a: b<TAB>c`, which is the text `b<TAB>c`) stays
    too, since a space would change the value; ruamel refuses it. `in_values` turns those
    into spaces as well, for the position table, whose marks a space does not move.

    One pass of ruamel's scanner, which reads each tab it decides on as a space."""
    return _as_spaces(text, _tab_spots(text, in_values=in_values))


def _tab_spots(text: str, *, in_values: bool = False) -> list[int]:
    """Where separating_tabs_as_spaces puts a space, in order.

    With `in_values`, a tab where ruamel happens to stop for another reason (a key that
    never gets its ':') is also read as a space and the text scanned again, as every
    tab was before; a few times at most, as such a stop refuses the file anyway."""
    if "\t" not in text:
        return []
    spaces: set[int] = set()
    for _ in range(_RESCANS):
        yaml = YAML(typ="safe", pure=True)
        yaml.Reader = _TabReader
        yaml.Scanner = _AnyTabScanner if in_values else _TabScanner
        yaml.reader.spaces = spaces
        try:
            for _token in yaml.scan(text):
                pass
        except ScannerError as exc:
            at = getattr(exc.problem_mark, "pointer", -1)
            if not (in_values and 0 <= at < len(text) and text[at] == "\t"):
                break
            if at in spaces or not text[text.rfind("\n", 0, at) + 1 : at].strip():
                break  # the tab indents its line: it gets its own finding
            spaces.add(at)
            continue
        except YAMLError:
            break  # the loader names it; the tabs before it are repaired
        break
    return sorted(spaces)


_RESCANS = 8


def _as_spaces(text: str, spots: list[int]) -> str:
    if not spots:
        return text
    parts, start = [], 0
    for spot in spots:
        parts.append(text[start:spot])
        start = spot + 1
    parts.append(text[start:])
    return " ".join(parts)


class _TabReader(Reader):
    """ruamel's reader, with the tabs the scanner has decided on read as spaces."""

    def __init__(self, stream: Any, loader: Any = None) -> None:
        self.spaces: set[int] = set()
        self.window = (0, 0)  # tabs here become spaces when first looked at
        super().__init__(stream, loader)

    def peek(self, index: int = 0) -> str:
        ch: str = super().peek(index)
        if ch == "\t":
            at = self.pointer + index
            if at in self.spaces:
                return " "
            if self.window[0] <= at < self.window[1]:
                self.spaces.add(at)
                return " "
        return ch


_PLAIN_STOP = "\0\r\n\x85\u2028\u2029#"  # after these a plain value's blanks are not its text
_BLANK_END = " \t\0\r\n\x85\u2028\u2029"
_PLAIN_GAP = " \t\r\n\x85\u2028\u2029"
_LINE_LEAD = re.compile(r"^[^\S\n]*", re.MULTILINE)
_BLOCK_HEADER = re.compile(r"[|>](?:[-+][1-9]?|[1-9][-+]?)?[ \t]*")
_DIRECTIVE_NAME = re.compile(r"%[0-9A-Za-z_:.-]*")
_COMMENT_START = re.compile(r"[ \t]#")
_LINE_END = re.compile(r"[\0\r\n]")


class _TabScanner(Scanner):
    """ruamel's scanner, deciding about each tab of block context where it would stop:
    a tab that separates (after an indicator, a quoted value or a key, before a comment
    or a line end, in a block scalar's header or a directive) is read as a space; one
    that indents a line, or that is inside a plain value (unless `in_values`), is not,
    and the scanner refuses it as before. Each run of blanks is looked at once."""

    in_values = False

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self._plain_end = -1  # where the last plain scalar ended
        self._run = (0, 0, False)  # the last run of blanks decided: start, end, verdict
        self._lines: tuple[list[int], list[int]] | None = None

    def _buffer(self) -> str:
        buffer: str = self.reader.buffer
        return buffer

    def _indents(self, index: int) -> bool:
        """Only blanks before `index` on its line (as `str.strip` counts them)."""
        if self._lines is None:
            starts, leads = [], []
            for match in _LINE_LEAD.finditer(self._buffer()):
                starts.append(match.start())
                leads.append(match.end())
            self._lines = (starts, leads)
        starts, leads = self._lines
        return leads[bisect.bisect_right(starts, index) - 1] > index

    def _separates(self, index: int) -> bool:
        """Whether the tab at `index` (the scanner is on it) is read as a space."""
        start, end, verdict = self._run
        if start <= index < end:
            return verdict
        buffer = self._buffer()
        start = end = index
        while start > 0 and buffer[start - 1] in " \t":
            start -= 1
        while buffer[end] in " \t":
            end += 1
        if self._indents(index):
            verdict = False
        elif start == self._plain_end and not self.in_values:
            after = buffer[end]
            verdict = after in _PLAIN_STOP or (after == ":" and buffer[end + 1] in _BLANK_END)
        else:
            verdict = True
        self._run = (start, end, verdict)
        return verdict

    def _space_tabs(self, start: int, end: int) -> None:
        buffer = self._buffer()
        self.reader.spaces.update(i for i in range(start, end) if buffer[i] == "\t")

    def scan_to_next_token(self) -> Any:
        while True:
            super().scan_to_next_token()
            reader = self.reader
            if self.flow_level or reader.peek() != "\t" or not self._separates(reader.pointer):
                return None
            reader.spaces.add(reader.pointer)

    def scan_plain(self) -> Any:
        token = super().scan_plain()
        self._plain_end = token.end_mark.index
        return token

    def scan_plain_spaces(self, indent: Any, start_mark: Any) -> Any:
        # The blanks and line breaks after a chunk of a plain value, decided here: the
        # scanner takes spaces there (and so goes on to a next word or line), not tabs.
        reader = self.reader
        if not self.flow_level and reader.peek() in _PLAIN_GAP:
            self._plain_end = pointer = reader.pointer
            buffer = self._buffer()
            end = pointer
            while buffer[end] in _PLAIN_GAP:
                end += 1
            tab = buffer.find("\t", pointer, end)
            while tab >= 0 and self._separates(tab):
                reader.spaces.add(tab)
                tab = buffer.find("\t", tab + 1, end)
        return super().scan_plain_spaces(indent, start_mark)

    def scan_block_scalar(self, style: Any, rt: Any = False) -> Any:
        # `|<TAB># note`: the blanks of the header line before its comment.
        header = _BLOCK_HEADER.match(self._buffer(), self.reader.pointer)
        if header is not None:
            self._space_tabs(header.start(), header.end())
        return super().scan_block_scalar(style, rt=rt)

    def scan_tag(self) -> Any:
        # `!!str<TAB>x`: ruamel wants a space where the tag ends. Reading a tag moves
        # only the reader, so on a refusal at a tab it is read again with that tab as
        # a space (at most once: the tag then ends at that space).
        reader = self.reader
        state = (reader.pointer, reader.index, reader.line, reader.column)
        try:
            return super().scan_tag()
        except ScannerError as exc:
            at = getattr(exc.problem_mark, "pointer", -1)
            buffer = self._buffer()
            if not (0 <= at < len(buffer) and buffer[at] == "\t") or at in reader.spaces:
                raise
            reader.spaces.add(at)
            reader.pointer, reader.index, reader.line, reader.column = state
            return super().scan_tag()

    def scan_directive(self) -> Any:
        # `%YAML<TAB>1.2`: ruamel refuses each tab it meets after the name of a YAML or
        # TAG directive, up to the comment (and the tab right after any other name);
        # the reader reads those as spaces when the scanner first looks at them.
        buffer = self._buffer()
        name = _DIRECTIVE_NAME.match(buffer, self.reader.pointer)
        end = name.end() if name is not None else self.reader.pointer + 1
        stop = end + 1
        if name is not None and name.group() in ("%YAML", "%TAG"):
            line = _LINE_END.search(buffer, end)
            line_end = line.start() if line else len(buffer)
            comment = _COMMENT_START.search(buffer, end, line_end)
            stop = comment.start() + 1 if comment else line_end
        self.reader.window = (end, stop)
        try:
            return super().scan_directive()
        finally:
            self.reader.window = (0, 0)


class _AnyTabScanner(_TabScanner):
    """Also a tab inside a plain value read as a space (for marks, not for data)."""

    in_values = True


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
# A tab inside a plain value (`a: b<TAB>c`), which ruamel cannot read.
VALUE_TAB = (
    "a tab inside an unquoted value cannot be read here; put the value in quotes, "
    "or write a space instead of the tab"
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


def tab_in_value(exc: Exception) -> bool:
    """Whether ruamel stopped at a tab that does not indent its line: after the repair
    of separating tabs, one inside a plain value."""
    mark = getattr(exc, "problem_mark", None)
    buffer, pointer = getattr(mark, "buffer", None), getattr(mark, "pointer", -1)
    if not (isinstance(buffer, str) and 0 <= pointer < len(buffer) and buffer[pointer] == "\t"):
        return False
    line_start = buffer.rfind("\n", 0, pointer) + 1
    return bool(buffer[line_start:pointer].strip())


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
                # Every tab ruamel stops at as a space: marks stay where they are.
                self.root: Any = yaml.load(separating_tabs_as_spaces(text, in_values=True))
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
