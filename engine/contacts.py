"""Contact lists: CSV (with a header), JSON, JSONL and YAML, read as a stream.

The reader never holds the list: it yields one `Contact` at a time. Launch is
all-or-nothing, so by default the reader first makes one full streaming pass that only
checks rows, raises `InputError` listing every bad row, and only then streams contacts
again. With `skip_invalid=True` it streams once and collects bad rows in `.skipped`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from .addresses import address_problem, plain_address
from .contact_headers import looks_like_zone, zone_warning
from .contact_sources import FORMATS, RawRecord, open_records
from .errors import InputError, UsageError
from .zones import zone_problem

# Deliberately conservative: no whitespace or control characters (no header injection),
# exactly one @, and a dot in the domain.
_ATOM = r"[^@\s\x00-\x1f\x7f<>(),;:\"\[\]\\]+"
_EMAIL = re.compile(rf"^{_ATOM}@{_ATOM}\.[A-Za-z0-9-]{{2,}}$")
MAX_LISTED_ERRORS = 20

__all__ = ["FORMATS", "Contact", "ContactReader", "RowError", "read_contacts"]


class Contact(NamedTuple):
    """One contact. `fields` holds every non-empty column (templates see it as `contact.*`)."""

    email: str
    fields: dict[str, str]
    timezone: str | None
    row: int


class RowError(NamedTuple):
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

    After iteration, `.skipped` lists the rows left out (skip_invalid mode), `.count`
    the contacts yielded and `.warnings` the columns that look like a time zone but are
    not read as one (engine.contact_headers), when the list has no `timezone` column.
    """

    def __init__(
        self,
        path: Path,
        *,
        skip_invalid: bool = False,
        fmt: str | None = None,
        scheduling_only: bool = False,
    ) -> None:
        self.path = path
        self.skip_invalid = skip_invalid
        self.fmt = fmt
        self.scheduling_only = scheduling_only
        self.skipped: list[RowError] = []
        self.warnings: list[str] = []
        self.count = 0
        self.total: int | None = None  # rows in the file, once `prepare` has counted them
        self._checked = False
        self._stream: Iterator[Contact] | None = None

    def __iter__(self) -> Iterator[Contact]:
        # The stream itself, so a `for` loop over the reader makes no extra call per contact.
        if self._stream is None:
            self._stream = self._contacts()
        return self._stream

    def __next__(self) -> Contact:
        if self._stream is None:
            self._stream = self._contacts()
        return next(self._stream)

    def check(self) -> list[RowError]:
        """One full streaming pass that only checks; returns every bad row."""
        errors: list[RowError] = []
        seen: dict[str, int] = {}
        rows = 0
        name = str(self.path)
        for record in open_records(self.path, self.fmt, _CHECKED_COLUMNS.__contains__):
            rows += 1
            error = _row_error(record, seen, name)
            if error is not None:
                errors.append(error)
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
        checked = self._checked
        columns: set[str] = set()
        zone_like: list[str] = []
        only = _scheduling_column if self.scheduling_only else None
        for line, row, fields in open_records(self.path, self.fmt, only):
            if checked:
                # The checking pass already vouched for every row; only a file changed
                # since then could make this one bad.
                if isinstance(fields, tuple) or "email" not in fields:
                    raise InputError(f"{name}:{line}: the file changed while it was read")
            else:
                error = _row_error((line, row, fields), seen, name)
                if error is not None:
                    self.skipped.append(error)
                    continue
            assert isinstance(fields, dict)
            if not columns.issuperset(fields):  # (no set is made per row)
                new = fields.keys() - columns
                columns |= new
                zone_like += [c for c in sorted(new) if looks_like_zone(c)]
                # Once the list has a `timezone` column, contacts are planned in its zone:
                # a `Contact Time Zone` beside it is not a zone left unread.
                found = "timezone" in columns
                self.warnings = [] if found else [zone_warning(name, c) for c in zone_like]
            self.count += 1
            yield _tuple(Contact, (fields["email"], fields, fields.get("timezone"), row))


_CHECKED_COLUMNS = frozenset({"email", "timezone"})
_tuple = tuple.__new__  # a Contact from its fields in order, without the generated __new__


def _scheduling_column(column: str) -> bool:
    """The columns a plan that renders nothing reads: the address and zone, and the
    columns whose name looks like a zone (for the warning that they are not read)."""
    return column in _CHECKED_COLUMNS or looks_like_zone(column)


_HINT = "fix those rows, or pass --skip-invalid to leave them out and go on with the rest"


def read_contacts(
    path: Path, *, skip_invalid: bool = False, fmt: str | None = None, scheduling_only: bool = False
) -> ContactReader:
    """Stream the contacts of `path`; the format comes from the extension unless `fmt` says.

    `scheduling_only`: a CSV contact's `fields` hold only the columns scheduling reads
    (email, timezone and zone-like names), for a plan that renders nothing; building the
    other columns' dictionary was a quarter of that pass (0.65 against 0.49 s for 100,000
    contacts of seven columns). Other formats are read whole.

    A path that does not exist is a UsageError (exit 2), as in every command.
    """
    if not path.exists():
        raise UsageError(f"{path}: no such file", hint="give the contact list's path")
    return ContactReader(path, skip_invalid=skip_invalid, fmt=fmt, scheduling_only=scheduling_only)


def _summary(name: str, errors: list[RowError]) -> str:
    head = f"{name}: {len(errors)} bad row{'s' if len(errors) != 1 else ''}"
    lines = [str(e) for e in errors[:MAX_LISTED_ERRORS]]
    if len(errors) > MAX_LISTED_ERRORS:
        lines.append(f"... and {len(errors) - MAX_LISTED_ERRORS} more")
    return head + "\n  " + "\n  ".join(lines)


def is_email(text: str) -> bool:
    """The address check every contact list row gets."""
    return email_problem(text) is None


def email_problem(email: str) -> str | None:
    """Why `email` is refused as a contact's address (the row check's reason), or None.

    Two checks: the list's own (`_EMAIL`: one @, a dot and a top-level domain of two or
    more characters) and what the message builder can write (`address_problem`). An
    address on the builder's fast path whose last label has two or more characters
    passes both, so the common case costs one pattern, not two (tests hold it equal).
    """
    if plain_address(email) is not None and email.rfind(".") < len(email) - 2:
        return None
    if _EMAIL.match(email) is None:
        return f"{email!r} is not an email address"
    # What the message builder could not write is refused here, before anyone is enrolled.
    problem = address_problem(email)
    return None if problem is None else f"{email!r} cannot be sent to: {problem}"


def _row_error(record: RawRecord, seen: dict[str, int], name: str) -> RowError | None:
    """Why a record is not a usable contact, or None. Records the address in `seen`."""
    line, row, fields = record
    if isinstance(fields, tuple):  # the source already knows the row is malformed
        return RowError(name, line, row, *fields)
    email = fields.get("email")
    if not email:
        return RowError(name, line, row, "email", "email is empty; every contact needs an address")
    problem = email_problem(email)
    if problem is not None:
        return RowError(name, line, row, "email", problem)
    tz = fields.get("timezone")
    problem = None if tz is None else zone_problem(tz)
    if problem is not None:
        return RowError(name, line, row, "timezone", f"{problem}; e.g. Europe/Amsterdam")
    key = email.lower()
    first = seen.get(key)
    if first is not None:
        return RowError(name, line, row, "email", f"duplicate of row {first} ({email})")
    seen[key] = row
    return None
