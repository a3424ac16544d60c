"""Contact lists: CSV (with a header), JSON, JSONL and YAML, read as a stream.

The reader never holds the list: it yields one `Contact` at a time. Launch is
all-or-nothing, so by default the reader first makes one full streaming pass that only
checks rows, raises `InputError` listing every bad row, and only then streams contacts
again. With `skip_invalid=True` it streams once and collects bad rows in `.skipped`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.calendar import is_zone_name
from engine.contact_sources import FORMATS, RawRecord, open_records
from engine.errors import InputError

# Deliberately conservative: no whitespace or control characters (no header injection),
# exactly one @, and a dot in the domain.
_ATOM = r"[^@\s\x00-\x1f\x7f<>(),;:\"\[\]\\]+"
_EMAIL = re.compile(rf"^{_ATOM}@{_ATOM}\.[A-Za-z0-9-]{{2,}}$")
MAX_LISTED_ERRORS = 20

__all__ = ["FORMATS", "Contact", "ContactReader", "RowError", "read_contacts"]


@dataclass(frozen=True, slots=True)
class Contact:
    """One contact. `fields` holds every non-empty column (templates see it as `contact.*`)."""

    email: str
    fields: dict[str, str]
    timezone: str | None
    row: int


@dataclass(frozen=True, slots=True)
class RowError:
    """A bad row: where it is (file, 1-based line and data row), which column, and why."""

    file: str
    line: int
    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: row {self.row}, column {self.column}: {self.reason}"


class ContactReader:
    """An iterator of contacts over one file; see the module docstring for the two modes.

    After iteration, `.skipped` lists the rows left out (skip_invalid mode) and `.count`
    the contacts yielded.
    """

    def __init__(self, path: Path, *, skip_invalid: bool = False, fmt: str | None = None) -> None:
        self.path = path
        self.skip_invalid = skip_invalid
        self.fmt = fmt
        self.skipped: list[RowError] = []
        self.count = 0
        self.total: int | None = None  # rows in the file, once `prepare` has counted them
        self._checked = False
        self._stream: Iterator[Contact] | None = None

    def __iter__(self) -> ContactReader:
        return self

    def __next__(self) -> Contact:
        if self._stream is None:
            self._stream = self._contacts()
        return next(self._stream)

    def check(self) -> list[RowError]:
        """One full streaming pass that only checks; returns every bad row."""
        errors: list[RowError] = []
        seen: dict[str, int] = {}
        rows = 0
        for record in open_records(self.path, self.fmt):
            rows += 1
            result = _to_contact(record, seen, str(self.path))
            if isinstance(result, RowError):
                errors.append(result)
        self.total = rows
        return errors

    def prepare(self) -> int | None:
        """Fail now if the list is bad (default mode): before any output or enrolment.

        Returns the number of rows when known (default mode), for a progress bar.
        """
        if not self.skip_invalid and not self._checked:
            errors = self.check()
            if errors:
                raise InputError(_summary(str(self.path), errors), hint=_HINT)
            self._checked = True
        return self.total

    def _contacts(self) -> Iterator[Contact]:
        name = str(self.path)
        self.prepare()
        seen: dict[str, int] = {}
        for record in open_records(self.path, self.fmt):
            result = _to_contact(record, seen, name)
            if isinstance(result, RowError):
                # Only reachable with skip_invalid (the check pass found no errors otherwise).
                self.skipped.append(result)
                continue
            self.count += 1
            yield result


_HINT = "fix those rows, or pass --skip-invalid to leave them out and go on with the rest"


def read_contacts(
    path: Path, *, skip_invalid: bool = False, fmt: str | None = None
) -> ContactReader:
    """Stream the contacts of `path`; the format comes from the extension unless `fmt` says."""
    return ContactReader(path, skip_invalid=skip_invalid, fmt=fmt)


def _summary(name: str, errors: list[RowError]) -> str:
    head = f"{name}: {len(errors)} bad row{'s' if len(errors) != 1 else ''}"
    lines = [str(e) for e in errors[:MAX_LISTED_ERRORS]]
    if len(errors) > MAX_LISTED_ERRORS:
        lines.append(f"... and {len(errors) - MAX_LISTED_ERRORS} more")
    return head + "\n  " + "\n  ".join(lines)


def _to_contact(record: RawRecord, seen: dict[str, int], name: str) -> Contact | RowError:
    line, row, values = record

    def bad(column: str, reason: str) -> RowError:
        return RowError(name, line, row, column, reason)

    if isinstance(values, str):  # the source already knows the row is malformed
        return bad("-", values)
    fields: dict[str, str] = {}
    for key, value in values.items():
        text = _as_text(value)
        if text is None:
            return bad(key, f"nested value {json.dumps(value, default=str)[:40]} is not supported")
        if text:
            fields[key] = text
    email = fields.get("email", "")
    if not email:
        return bad("email", "email is empty; every contact needs an address")
    if not _EMAIL.match(email):
        return bad("email", f"{email!r} is not an email address")
    tz = fields.get("timezone")
    if tz is not None and not is_zone_name(tz):
        return bad("timezone", f"{tz!r} is not an IANA time zone (e.g. Europe/Amsterdam)")
    key = email.lower()
    first = seen.get(key)
    if first is not None:
        return bad("email", f"duplicate of row {first} ({email})")
    seen[key] = row
    return Contact(email=email, fields=fields, timezone=tz, row=row)


def _as_text(value: Any) -> str | None:
    """Cell value as template text; None for values a template cannot use (lists, maps)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list):
        return None
    return str(value)
