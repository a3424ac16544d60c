"""Checks on input we do not control, run before the expensive work (engine.limits).

A cadence file's text is scanned once, character by character, before any YAML parser
sees it: its size, how deep mappings and lists nest, how many entries one holds, and how
long a number is. Parsers and the schema validator are recursive or slow on such input
(a 40 KB file nested 20,000 deep took 37 s), so the scan is what keeps them bounded.
The scan is deliberately simple and errs only on the side of counting more nesting than
there is (plain multi-line scalars); real cadences stay far below every limit.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from typing import Any, NamedTuple

from .limits import (
    MAX_CADENCE_BYTES,
    MAX_COLLECTION_ITEMS,
    MAX_NESTING,
    MAX_NUMBER_CHARS,
)

_BLOCK_SCALAR = re.compile(r"(?:^|[\s:-])[|>][-+0-9]*\s*$")
_NUMBER = re.compile(r"(?<![^\s\[{,:-])[-+]?(?:0[xo])?[0-9][0-9_.eE+-]*(?=$|[\s\]},])")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(
    r"\\(?:u[dD][89a-fA-F][0-9a-fA-F]{2}|U0000[dD][89a-fA-F][0-9a-fA-F]{2})"
)
# Where a lone surrogate in loaded values can come from: such an escape, or the character
# itself in the text (a surrogateescape decode; both parsers refuse it, but it costs
# nothing to look). A text with neither cannot give one, whatever its values.
_SURROGATE_SOURCE = re.compile(f"{_SURROGATE_ESCAPE.pattern}|{_SURROGATE.pattern}")


class LimitProblem(NamedTuple):
    """A limit a text breaks, at a 1-based position."""

    message: str
    line: int = 1
    col: int = 1


def utf16_problem(head: bytes) -> str | None:
    """Why bytes that start with `head` are UTF-16 rather than UTF-8, or None."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "the file is UTF-16 (it starts with a UTF-16 byte order mark)"
    sample = head[:200]
    if len(sample) >= 4 and sample.count(0) * 3 >= len(sample):
        order = "little-endian" if sample[1:2] == b"\x00" else "big-endian"
        return f"the file looks like UTF-16 ({order}, without a byte order mark)"
    return None


def size_problem(size: int) -> LimitProblem | None:
    if size > MAX_CADENCE_BYTES:
        return LimitProblem(
            f"the file is {size:,} bytes; a cadence file may be at most "
            f"{MAX_CADENCE_BYTES:,} bytes; split it into several cadences"
        )
    return None


def text_problem(text: str, *, size_checked: bool = False) -> LimitProblem | None:
    """The first limit `text` breaks (size, nesting, entries, number length), or None.

    `size_checked`: the caller has checked the size of the bytes it decoded (a BOM and
    all), which is at least that of the text."""
    found = None if size_checked else size_problem(_utf8_size(text))
    return found or next(_scan(text), None)


def _utf8_size(text: str) -> int:
    """The text's size in UTF-8, encoded only when the length cannot tell: a character
    takes one to four bytes (a lone surrogate three)."""
    if 4 * len(text) <= MAX_CADENCE_BYTES or text.isascii():
        return len(text)  # exact for ASCII; otherwise below the limit either way
    return len(text.encode("utf-8", "surrogatepass"))


def _scan(text: str) -> Iterator[LimitProblem]:
    blocks: list[list[int]] = []  # open block collections: [indent, entries]
    flows: list[int] = []  # open flow collections: entries so far
    quote = [""]  # the quote a scalar spanning lines is still inside
    scalar_indent = -1  # inside a block scalar (| or >) deeper than this indent
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if scalar_indent >= 0:
            if not stripped.strip() or indent > scalar_indent:
                continue
            scalar_indent = -1
        if not stripped or stripped.startswith("#"):
            continue
        if not flows and not quote[0]:
            while blocks and blocks[-1][0] > indent:
                blocks.pop()
            if not blocks or blocks[-1][0] < indent:
                blocks.append([indent, 0])
            blocks[-1][1] += 1
            if blocks[-1][1] > MAX_COLLECTION_ITEMS:
                yield _too_many(number, indent + 1)
            rest = stripped
            while rest.startswith("- ") or rest == "-":  # `- - x`: a list in a list
                indent += 2
                blocks.append([indent, 1])
                rest = rest[2:].lstrip(" ")
            if len(blocks) > MAX_NESTING:
                yield _too_deep(number, indent + 1)
        if quote[0] or _SPECIAL.search(line):
            unquoted = yield from _flow_scan(line, number, quote, flows, len(blocks))
        else:
            unquoted = line  # nothing quoted, no brackets, no comment: the common line
        for match in _NUMBER.finditer(unquoted):
            if len(match.group()) > MAX_NUMBER_CHARS:
                yield LimitProblem(
                    f"a number of {len(match.group()):,} characters; numbers in a cadence "
                    f"have at most {MAX_NUMBER_CHARS}",
                    number,
                    match.start() + 1,
                )
        if not flows and not quote[0] and _BLOCK_SCALAR.search(unquoted.rstrip()):
            scalar_indent = blocks[-1][0] if blocks else 0


_SPECIAL = re.compile(r"[\[\]{}\"'#,]")


_TOKEN = re.compile(r"""\"(?:[^"\\]|\\.)*(\"?)|'(?:[^']|'')*('?)|#|[\[\]{},]""")
_CLOSE = {'"': re.compile(r'(?:[^"\\]|\\.)*"'), "'": re.compile(r"(?:[^']|'')*'")}


def _flow_scan(
    line: str, number: int, quote: list[str], flows: list[int], depth: int
) -> Generator[LimitProblem, None, str]:
    """Brackets and commas of one line outside quotes and comments; returns the line with
    quoted text blanked out. `quote` and `flows` carry over to the next line."""
    plain: list[str] = []
    col = 0
    if quote[0]:  # a quoted scalar that started on an earlier line
        closed = _CLOSE[quote[0]].match(line)
        if closed is None:
            return ""
        quote[0] = ""
        col = closed.end()
        plain.append(" " * col)
    for token in _TOKEN.finditer(line, col):
        start = token.start()
        ch = line[start]
        if ch in "\"'#" and start > 0 and line[start - 1] not in " \t[{,:-":
            continue  # `don't`, `a#b`: part of a plain scalar
        plain.append(line[col:start])
        col = token.end()
        if ch == "#":
            return "".join(plain)
        if ch in "\"'":
            if not (token.group(1) or token.group(2)):
                quote[0] = ch  # runs on to the next line
            plain.append(" " * (col - start))
            continue
        plain.append(ch)
        if ch in "[{":
            flows.append(1)
            if len(flows) + depth > MAX_NESTING:
                yield _too_deep(number, start + 1)
        elif ch in "]}":
            if flows:
                flows.pop()
        elif flows:  # a comma
            flows[-1] += 1
            if flows[-1] > MAX_COLLECTION_ITEMS:
                yield _too_many(number, start + 1)
    plain.append(line[col:])
    return "".join(plain)


def _too_deep(line: int, col: int) -> LimitProblem:
    return LimitProblem(
        f"mappings and lists nest more than {MAX_NESTING} levels deep here", line, col
    )


def _too_many(line: int, col: int) -> LimitProblem:
    return LimitProblem(
        f"a mapping or list with more than {MAX_COLLECTION_ITEMS:,} entries", line, col
    )


def surrogate_problem(text: str, data: Any) -> LimitProblem | None:
    """A lone surrogate (`"\\ud800"`) in the loaded values: not a character at all."""
    if _SURROGATE_SOURCE.search(text) is None or not _holds_surrogate(data):
        return None
    escape = _SURROGATE_ESCAPE.search(text)
    offset = escape.start() if escape else 0
    before = text[:offset]
    return LimitProblem(
        "a \\u escape writes a lone surrogate (U+D800–U+DFFF), which is not a character; "
        "write the character itself",
        before.count("\n") + 1,
        offset - (before.rfind("\n") + 1) + 1,
    )


def _holds_surrogate(data: Any) -> bool:
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False
