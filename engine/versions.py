"""The two sides of `cadence diff`: a cadence read from a file or from `REV:PATH` (git).

A version that breaks a rule is still read, with its errors, so the diff can say what a
change breaks; only a file that is not a cadence at all is refused.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, UsageError
from .model import Cadence


class NotComparable(InputError):
    """A version that cannot be read as a cadence at all.

    Exit 2, as diff(1) does for trouble, so that exit 1 keeps meaning "it changes".
    """

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Version:
    """One side of a diff: the cadence and the errors that keep it from validating."""

    cadence: Cadence
    label: str
    errors: tuple[str, ...] = ()


def load_version(spec: str) -> Version:
    """A cadence from a file, or from `REV:PATH` read through `git show`.

    A version that breaks a rule is still compared (a diff must be able to say "this
    change breaks the follow-up"); only one that cannot be read as a cadence at all fails.
    """
    path = Path(spec)
    if path.exists() or ":" not in spec:
        if not path.exists():
            raise UsageError(f"{spec}: no such file", hint="give a file or REV:PATH (git)")
        return _lenient(path, spec)
    rev, _, inner = spec.partition(":")
    try:
        shown = subprocess.run(
            ["git", "show", f"{rev}:{inner}"], capture_output=True, check=False, timeout=30
        )
    except OSError as exc:
        raise UsageError(f"{spec}: cannot run git: {exc.strerror}") from None
    if shown.returncode != 0:
        reason = shown.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(
            f"{spec}: git show failed: {reason[0] if reason else 'unknown error'}",
            hint="REV:PATH reads PATH (from the repository root) as it was at revision REV; "
            "run inside the git repository, e.g. main:cadences/outbound.yaml",
        )
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / Path(inner).name
        copy.write_bytes(shown.stdout)
        try:
            version = _lenient(copy, spec)
        except InputError as exc:
            raise NotComparable(exc.message.replace(str(copy), spec), hint=exc.hint) from None
        errors = tuple(e.replace(str(copy), spec) for e in version.errors)
        return Version(version.cadence, spec, errors)


def _lenient(path: Path, label: str) -> Version:
    from .findings import Severity
    from .limits import MAX_CAMPAIGN_DAY
    from .loader import parse
    from .validate import validate_path

    cadence, findings, text = validate_path(path)
    errors = tuple(f.render() for f in findings if f.severity is Severity.ERROR)
    if cadence is not None and not errors:
        return Version(cadence, label)
    try:
        data = parse(text) if text is not None else None
        if not isinstance(data, dict):
            raise TypeError("not a mapping")
        lenient = Cadence.from_data(data, source=label)
        if not lenient.steps:  # nothing to schedule, so nothing to compare
            raise ValueError("no steps")
        if max(s.day for s in lenient.steps) > MAX_CAMPAIGN_DAY:  # its dates overflow
            raise ValueError("a day beyond the last campaign day")
        return Version(lenient, label, errors)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        raise NotComparable(
            f"{label}: cannot be compared, it is not a readable cadence:\n" + "\n".join(errors),
            hint=f"run `cadence validate {label}` for details",
        ) from None
