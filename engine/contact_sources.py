"""Contact list sources: CSV, JSON, JSONL and YAML records with normalised column names.

Each source yields `(line, row, values)`: the 1-based line where the record starts, its
1-based data row, and either the column→value mapping or a string saying why the record
is malformed. File-level problems (no header, empty file, not UTF-8) raise InputError.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.contact_headers import column_names
from engine.errors import InputError

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
    path: Path, fmt: str | None, only: frozenset[str] | None = None
) -> Iterator[RawRecord]:
    """Records of `path` in its format; file-level problems raise InputError.

    `only` limits the columns returned (CSV; a checking pass needs two of them).
    """
    kind = fmt or _EXTENSIONS.get(path.suffix.lower())
    if kind not in FORMATS:
        raise InputError(
            f"{path}: cannot tell the contact list format from {path.suffix or 'no extension'!r}",
            hint="use .csv, .json, .jsonl or .yaml, or pass --contacts-format",
        )
    reader = {"csv": _csv, "json": _json, "jsonl": _jsonl, "yaml": _yaml}[kind]
    try:
        yield from (_csv(path, only) if kind == "csv" else reader(path))
    except UnicodeDecodeError:
        raise InputError(
            f"{path}:{_first_undecodable(path)}",
            hint="re-save the contact list as UTF-8 (e.g. 'CSV UTF-8' in Excel)",
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None


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
    columns = column_names(names)
    if "email" not in columns:
        raise InputError(
            f"{path}:1: no 'email' column (columns: {', '.join(columns) or 'none'})",
            hint="the first row must be a header naming the columns, one of them 'email'",
        )
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise InputError(f"{path}:1: column {dupes[0]!r} appears more than once in the header")
    return columns


def _csv(path: Path, only: frozenset[str] | None = None) -> Iterator[RawRecord]:
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
        keep = [(i, c) for i, c in enumerate(columns) if only is None or c in only]
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
            # Empty cells are left out so a template's `default(...)` applies to them.
            if only is None:
                values = {
                    c: t for c, v in zip(columns, cells, strict=False) if v and (t := v.strip())
                }
            else:
                n = len(cells)
                values = {c: t for i, c in keep if i < n and (t := cells[i].strip())}
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


_EMPTY_HINT = "a contact list needs a header row with an 'email' column and one row per contact"


def _normalised(values: Any) -> Values:
    if not isinstance(values, dict):
        return ("-", f"expected an object with an 'email' key, got {type(values).__name__}")
    out: dict[str, str] = {}
    for column, value in zip(column_names(map(str, values)), values.values(), strict=True):
        text = _as_text(value)
        if text is None:
            shown = json.dumps(value, default=str)[:40]
            return (column, f"nested value {shown} is not supported")
        if text:
            out[column] = text
    return out


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
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            row += 1
            try:
                yield line, row, _normalised(json.loads(text.rstrip("\r\n")))
            except json.JSONDecodeError as exc:
                yield line, row, ("-", f"invalid JSON at column {exc.colno}: {exc.msg}")
    if row == 0:
        raise InputError(f"{path}: the file is empty", hint=_EMPTY_HINT)


def _json(path: Path) -> Iterator[RawRecord]:
    """A top-level JSON array, decoded one element at a time from 64 KiB chunks."""
    decoder = json.JSONDecoder()
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
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as exc:
                    if eof:
                        raise InputError(
                            f"{path}:{line + buf.count(chr(10), pos, exc.pos)}: invalid JSON: "
                            f"{exc.msg}"
                        ) from None
                    fill()
            row += 1
            yield line, row, _normalised(value)
            line += buf.count("\n", pos, end)
            pos = end
        if row == 0:
            raise InputError(f"{path}: has no contacts", hint=_EMPTY_HINT)


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


def _yaml_value(event: Any, events: Iterator[Any]) -> Any:
    """The value that starts with `event`, consuming all of its events even when refused
    (so the next row starts in the right place); raises _Refused after that."""
    from ruamel.yaml.events import (
        AliasEvent,
        CollectionEndEvent,
        MappingStartEvent,
        SequenceStartEvent,
    )

    problems: list[str] = []
    if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
        problems.append("YAML anchors and aliases are not supported in contact lists")
    elif getattr(event, "tag", None) is not None and not getattr(event, "implicit", (True,))[0]:
        tag = str(event.tag).replace("tag:yaml.org,2002:", "!!")
        problems.append(f"YAML tag {tag} is not allowed in contact lists")

    def child(start: Any) -> Any:
        try:
            return _yaml_value(start, events)
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
