"""Contact list sources: CSV, JSON, JSONL and YAML records with normalised column names.

Each source yields `(line, row, values)`: the 1-based line where the record starts, its
1-based data row, and either the column→value mapping or a string saying why the record
is malformed. File-level problems (no header, empty file, not UTF-8) raise InputError.
"""

from __future__ import annotations

import csv
import functools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .contact_headers import column_names
from .errors import InputError, UsageError
from .input_checks import utf16_problem
from .limits import (
    MAX_COLUMNS,
    MAX_FIELD_CHARS,
    MAX_NESTING,
    MAX_RECORD_BYTES,
)

# A record's values: non-empty text per column, or (column, reason) when it is malformed.
Values = dict[str, str] | tuple[str, str]
RawRecord = tuple[int, int, Values]
FORMATS = ("csv", "json", "jsonl", "yaml")
_EXTENSIONS = {
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".yaml": "yaml",
    ".yml": "yaml",
}
_CHUNK = 1 << 16


def open_records(
    path: Path, fmt: str | None, only: Callable[[str], bool] | None = None
) -> Iterator[RawRecord]:
    """Records of `path` in its format; file-level problems raise InputError.

    `only` says which columns are returned (CSV; a checking pass needs two of them).
    """
    kind = fmt or _EXTENSIONS.get(path.suffix.lower())
    if kind not in FORMATS:  # what the command was told, not what the file holds
        raise UsageError(
            f"{path}: cannot tell the contact list format from {path.suffix or 'no extension'!r}",
            hint="use .csv, .json, .jsonl or .yaml, or pass --contacts-format",
        )
    reader = {"csv": _csv, "json": _json, "jsonl": _jsonl, "yaml": _yaml}[kind]
    try:
        _check_encoding(path)
        yield from (_csv(path, only) if kind == "csv" else reader(path))
    except UnicodeDecodeError:
        raise InputError(f"{path}:{_first_undecodable(path)}", hint=_UTF8_HINT) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None


_UTF8_HINT = "re-save the contact list as UTF-8 (e.g. 'CSV UTF-8' in Excel)"


def _check_encoding(path: Path) -> None:
    """UTF-16 (with or without a BOM) named as such, not as a bad byte or a bad header."""
    with path.open("rb") as f:
        head = f.read(256)
    utf16 = utf16_problem(head)
    if utf16 is not None:
        raise InputError(f"{path}:1: {utf16}", hint=_UTF8_HINT)


def _first_undecodable(path: Path) -> str:
    """`LINE: not UTF-8 text (byte 0xE9 at offset N)` for the first byte that is not UTF-8."""
    # Only runs after a decode failure, so a second (binary) read costs nothing normally.
    offset = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = offset + exc.start
                return f"{number}: not UTF-8 text (byte 0x{raw[exc.start]:02X} at offset {bad})"
            offset += len(raw)
    return "1: not UTF-8 text"


def _header(path: Path, names: list[str]) -> list[str]:
    if len(names) > MAX_COLUMNS:
        raise InputError(
            f"{path}:1: the header has {len(names):,} columns; a contact list may have "
            f"at most {MAX_COLUMNS:,}",
            hint="leave out the columns the cadence does not use",
        )
    columns = column_names(names)
    if "email" not in columns:
        raise InputError(
            f"{path}:1: no 'email' column (columns: {', '.join(columns) or 'none'})",
            hint="the first row must be a header naming the columns, one of them 'email'",
        )
    dupes = sorted(c for c, n in Counter(columns).items() if n > 1)
    if dupes:
        raise InputError(f"{path}:1: column {dupes[0]!r} appears more than once in the header")
    return columns


def _csv(path: Path, only: Callable[[str], bool] | None = None) -> Iterator[RawRecord]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        # strict: a quote that is never closed is an error, not a cell that silently
        # swallows every later row up to the end of the file.
        reader = csv.reader(f, delimiter=_delimiter(f.readline()), strict=True)
        f.seek(0)
        try:
            first = next(reader, None)
        except csv.Error as exc:
            raise InputError(f"{path}:1: the header row is not valid CSV ({exc})") from None
        if first is None:
            raise InputError(f"{path}: the file is empty", hint=_EMPTY_HINT)
        columns = _header(path, first)
        width = len(columns)
        keep = [(i, c) for i, c in enumerate(columns) if only is None or only(c)]
        row = 0
        line = reader.line_num + 1
        while True:
            try:
                cells = next(reader, None)
            except csv.Error as exc:
                start, line = line, reader.line_num + 1
                row += 1
                yield start, row, ("-", _csv_problem(exc))
                continue
            if cells is None:
                break
            start, line = line, reader.line_num + 1
            if not cells or cells == [""]:
                continue  # blank lines are not rows
            row += 1
            if len(cells) > width:
                yield start, row, ("-", f"{len(cells)} cells but the header has {width} columns")
                continue
            # Every cell, not only the ones kept: both passes must agree on the bad rows.
            if max(map(len, cells)) > MAX_FIELD_CHARS:
                long_cell = next(i for i, v in enumerate(cells) if len(v) > MAX_FIELD_CHARS)
                yield start, row, (columns[long_cell], _too_long(len(cells[long_cell])))
                continue
            # Empty cells are left out so a template's `default(...)` applies to them.
            if only is None:
                values = {
                    c: t for c, v in zip(columns, cells, strict=False) if v and (t := v.strip())
                }
            else:
                # A loop, not a comprehension: for the two or three cells a pass keeps,
                # making and calling the comprehension's function cost as much again.
                n = len(cells)
                values = {}
                for i, c in keep:
                    if i < n and (t := cells[i].strip()):
                        values[c] = t
            yield start, row, values
        if row == 0:
            raise InputError(f"{path}: has a header but no contacts", hint=_EMPTY_HINT)


def _csv_problem(exc: csv.Error) -> str:
    if "unexpected end of data" in str(exc):
        return (
            "a quoted cell that starts in this row is never closed, so it runs to the end of "
            'the file; close the quote (a quote inside a quoted cell is written "")'
        )
    return f'not valid CSV ({exc}); a quote inside a quoted cell is written ""'


def _delimiter(header: str) -> str:
    """`,` normally; `;` or a tab when the header uses that instead (European Excel, TSV)."""
    if "," in header:
        return ","
    for candidate in (";", "\t"):
        if candidate in header:
            return candidate
    return ","


_TOO_DEEP = f"values nested more than {MAX_NESTING} levels deep; contact fields are plain values"
_EMPTY_HINT = "a contact list needs a header row with an 'email' column and one row per contact"


class _RepeatedKey(dict[str, Any]):
    """A JSON object that names a key twice (the decoder would keep the last silently)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    values = dict(pairs)
    if len(values) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                return _RepeatedKey(key)
            seen.add(key)
    return values


# Integers stay the text they are (a contact field is text): int() of a very long one
# raises ValueError in Python ≥ 3.11; as text the field-length bound applies to it.
_DECODING: dict[str, Any] = {"parse_int": str, "object_pairs_hook": _object}


def _normalised(values: Any) -> Values:
    if isinstance(values, _RepeatedKey):
        return (values.key, "the key is given twice in the record; give each field once")
    if not isinstance(values, dict):
        return ("-", f"expected an object with an 'email' key, got {type(values).__name__}")
    if len(values) > MAX_COLUMNS:
        return ("-", f"{len(values):,} fields; a contact may have at most {MAX_COLUMNS:,}")
    out: dict[str, str] = {}
    for column, value in zip(_columns(tuple(values)), values.values(), strict=True):
        text = _as_text(value)
        if text is None:
            return (column, f"nested value {_json_prefix(value, 40)} is not supported")
        if len(text) > MAX_FIELD_CHARS:
            return (column, _too_long(len(text)))
        if text:
            out[column] = text
    return out


@functools.lru_cache(maxsize=64)
def _columns(keys: tuple[str, ...]) -> list[str]:
    """The column names of a record's keys: the records of one list share a few key
    orders, so each is normalised once, not once per record."""
    return column_names(map(str, keys))


class _Piece(str):
    """Text of the JSON being written, as opposed to a value still to write."""

    __slots__ = ()


_DONE = object()


def _json_prefix(value: Any, limit: int) -> str:
    """The first `limit` characters of `json.dumps(value, default=str)`, written without
    recursion and without going further: a value nested thousands deep costs `limit`."""
    out: list[str] = []
    size = 0
    stack: list[Iterator[Any]] = [iter((value,))]
    while stack and size < limit:
        item = next(stack[-1], _DONE)
        if item is _DONE:
            stack.pop()
            continue
        if type(item) is _Piece:
            piece: str = item
        elif isinstance(item, dict):
            stack.append(_object_pieces(item, limit))
            continue
        elif isinstance(item, list | tuple):
            stack.append(_array_pieces(item))
            continue
        else:
            piece = json.dumps(item[:limit] if isinstance(item, str) else item, default=str)
        out.append(piece)
        size += len(piece)
    return "".join(out)[:limit]


def _array_pieces(items: list[Any] | tuple[Any, ...]) -> Iterator[Any]:
    yield _Piece("[")
    for i, item in enumerate(items):
        if i:
            yield _Piece(", ")
        yield item
    yield _Piece("]")


def _object_pieces(mapping: dict[Any, Any], limit: int) -> Iterator[Any]:
    yield _Piece("{")
    for i, (key, item) in enumerate(mapping.items()):
        if i:
            yield _Piece(", ")
        yield _Piece(json.dumps(_json_key(key)[:limit]) + ": ")
        yield item
    yield _Piece("}")


def _json_key(key: Any) -> str:
    # As json.dumps writes a key that is not text (true, null, 1.5).
    if isinstance(key, str):
        return key
    return json.dumps(key) if key is None or isinstance(key, bool) else str(key)


def _too_long(n: int) -> str:
    return f"the value has {n:,} characters; a field may have at most {MAX_FIELD_CHARS:,}"


def _as_text(value: Any) -> str | None:
    """A JSON/YAML value as template text; None for values a template cannot use."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict | list):
        return None
    return str(value)


def _jsonl(path: Path) -> Iterator[RawRecord]:
    row = 0
    with path.open(encoding="utf-8-sig") as f:
        for line, text in enumerate(iter(lambda: f.readline(MAX_RECORD_BYTES + 1), ""), start=1):
            if len(text) > MAX_RECORD_BYTES and not text.endswith("\n"):
                raise InputError(
                    f"{path}:{line}: a line longer than {MAX_RECORD_BYTES:,} characters; "
                    "one contact per line, each well under that"
                )
            if not text.strip():
                continue
            row += 1
            try:
                yield line, row, _normalised(json.loads(text.rstrip("\r\n"), **_DECODING))
            except json.JSONDecodeError as exc:
                yield line, row, ("-", f"invalid JSON at column {exc.colno}: {exc.msg}")
            except RecursionError:
                yield line, row, ("-", _TOO_DEEP)
    if row == 0:
        raise InputError(f"{path}: the file is empty", hint=_EMPTY_HINT)


def _json(path: Path) -> Iterator[RawRecord]:
    """A top-level JSON array, decoded one element at a time from 64 KiB chunks."""
    decoder = json.JSONDecoder(**_DECODING)
    with path.open(encoding="utf-8-sig") as f:
        buf, pos, line, row = f.read(_CHUNK), 0, 1, 0
        eof = len(buf) < _CHUNK

        def fill() -> None:
            nonlocal buf, pos, eof
            more = f.read(_CHUNK)
            eof = len(more) < _CHUNK
            buf, pos = buf[pos:] + more, 0

        def skip(chars: str) -> None:
            nonlocal pos, line
            while True:
                while pos < len(buf) and buf[pos] in chars:
                    line += buf[pos] == "\n"
                    pos += 1
                if pos < len(buf) or eof:
                    return
                fill()

        skip(" \t\r\n")
        if pos >= len(buf):
            raise InputError(f"{path}: the file is empty", hint=_EMPTY_HINT)
        if buf[pos] != "[":
            raise InputError(f"{path}:{line}: expected a JSON array of contact objects")
        pos += 1
        while True:
            skip(" \t\r\n,")
            if pos >= len(buf):
                raise InputError(f"{path}:{line}: the JSON array is not closed with ']'")
            if buf[pos] == "]":
                break
            value: Any = _DEEP
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                    break
                except RecursionError:
                    # Nested too deep for the (recursive) decoder: a bad row, and the
                    # list goes on after it.
                    skipped = _value_end(buf, pos)
                    if skipped is not None:
                        end = skipped
                        break
                    problem = f"{path}:{line}: {_TOO_DEEP}"
                except json.JSONDecodeError as exc:
                    problem = (
                        f"{path}:{line + buf.count(chr(10), pos, exc.pos)}: invalid JSON: {exc.msg}"
                    )
                if len(buf) - pos > MAX_RECORD_BYTES:
                    raise InputError(
                        f"{path}:{line}: a contact record longer than "
                        f"{MAX_RECORD_BYTES:,} characters"
                    ) from None
                if eof:
                    raise InputError(problem) from None
                fill()
            row += 1
            try:
                values = ("-", _TOO_DEEP) if value is _DEEP else _normalised(value)
            except RecursionError:
                values = ("-", _TOO_DEEP)
            yield line, row, values
            line += buf.count("\n", pos, end)
            pos = end
        if row == 0:
            raise InputError(f"{path}: has no contacts", hint=_EMPTY_HINT)


_DEEP = object()  # a record too deep to decode


def _value_end(buf: str, pos: int) -> int | None:
    """Where the JSON array or object at `pos` ends, by its brackets (strings skipped);
    None when it does not end within `buf`. Only for a record too deep to decode."""
    if buf[pos] not in "[{":
        return None
    depth = 0
    for match in _BRACKETS.finditer(buf, pos):
        if match.group(1) is None:
            continue  # a string, brackets and all
        depth += 1 if match.group(1) in "[{" else -1
        if depth <= 0:
            return match.end()
    return None


# Brackets outside JSON strings (a string is matched whole, so its brackets never count).
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|([\[\]{}])')


def _yaml(path: Path) -> Iterator[RawRecord]:
    """A top-level YAML list, one contact at a time from the parser's events.

    ruamel's reader pulls the file in small chunks and the parser yields events lazily, so
    a list of any length is never held whole. Values are taken as written (a zip code
    `01234` stays `01234`); tags, anchors and aliases are refused per row (contact data
    never needs them, and they are how YAML builds objects or bombs).
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    events = YAML(typ="safe", pure=True).parse
    try:
        with path.open(encoding="utf-8-sig") as f:
            yield from _yaml_rows(path, events(f))
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InputError(f"{where}: YAML syntax error: {getattr(exc, 'problem', exc)}") from None


def _yaml_rows(path: Path, events: Iterator[Any]) -> Iterator[RawRecord]:
    from ruamel.yaml.events import (
        CollectionStartEvent,
        DocumentStartEvent,
        NodeEvent,
        SequenceEndEvent,
        SequenceStartEvent,
    )

    node = next((e for e in events if isinstance(e, NodeEvent | DocumentStartEvent)), None)
    if isinstance(node, DocumentStartEvent):
        node = next((e for e in events if isinstance(e, NodeEvent)), None)
    if node is None or (_is_null(node) and not isinstance(node, CollectionStartEvent)):
        raise InputError(f"{path}: the file is empty", hint=_EMPTY_HINT)
    if not isinstance(node, SequenceStartEvent):
        raise InputError(f"{path}:{node.start_mark.line + 1}: expected a YAML list of contacts")
    row = 0
    for event in events:
        if isinstance(event, SequenceEndEvent):
            break
        row += 1
        line = event.start_mark.line + 1
        try:
            yield line, row, _normalised(_yaml_value(event, events))
        except _Refused as exc:
            yield line, row, ("-", str(exc))
    if row == 0:
        raise InputError(f"{path}: has no contacts", hint=_EMPTY_HINT)
    for event in events:
        if isinstance(event, DocumentStartEvent):
            line = event.start_mark.line + 1
            raise InputError(
                f"{path}:{line}: one list of contacts per file, found a second document"
            )


class _Refused(Exception):
    """A YAML feature contact rows do not take; the row is reported, reading goes on."""


def _is_null(event: Any) -> bool:
    from ruamel.yaml.events import ScalarEvent

    return (
        isinstance(event, ScalarEvent)
        and event.style is None
        and event.value in ("", "~", "null", "Null", "NULL")
    )


def _skip(events: Iterator[Any]) -> None:
    """Consume the rest of a collection whose start was read, without recursion."""
    from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent

    open_ = 1
    for event in events:
        if isinstance(event, CollectionStartEvent):
            open_ += 1
        elif isinstance(event, CollectionEndEvent):
            open_ -= 1
            if open_ == 0:
                return


def _explicit_tag(event: Any) -> str | None:
    """The tag written on a node (`!!python/object/apply`), or None for an implicit one."""
    tag = getattr(event, "tag", None)
    if tag is None:
        return None
    implicit = getattr(event, "implicit", False)
    # Scalars carry (plain, quoted) flags; collections a single bool.
    if implicit[0] if isinstance(implicit, tuple) else implicit:
        return None
    return str(tag).replace("tag:yaml.org,2002:", "!!")


def _yaml_value(event: Any, events: Iterator[Any], depth: int = 0) -> Any:
    """The value that starts with `event`, consuming all of its events even when refused
    (so the next row starts in the right place); raises _Refused after that."""
    from ruamel.yaml.events import (
        AliasEvent,
        CollectionEndEvent,
        CollectionStartEvent,
        MappingStartEvent,
        SequenceStartEvent,
    )

    if depth > MAX_NESTING and isinstance(event, CollectionStartEvent):
        _skip(events)
        raise _Refused(_TOO_DEEP)
    problems: list[str] = []
    tag = _explicit_tag(event)
    if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
        problems.append("YAML anchors and aliases are not supported in contact lists")
    elif tag is not None:
        problems.append(
            f"YAML tag {tag} is not allowed in contact lists: they are loaded safely; "
            "write plain values"
        )

    def child(start: Any) -> Any:
        try:
            return _yaml_value(start, events, depth + 1)
        except _Refused as exc:
            problems.append(str(exc))
            return None

    value: Any
    if isinstance(event, MappingStartEvent):
        value = {}
        for key_event in events:
            if isinstance(key_event, CollectionEndEvent):
                break
            key = str(child(key_event))
            item = child(next(events))
            if key in value:
                problems.append(f"duplicate key {key!r}")
            value[key] = item
    elif isinstance(event, SequenceStartEvent):
        value = []
        for item_event in events:
            if isinstance(item_event, CollectionEndEvent):
                break
            value.append(child(item_event))
    else:
        value = None if isinstance(event, AliasEvent) or _is_null(event) else event.value
    if problems:
        raise _Refused(problems[0])
    return value
