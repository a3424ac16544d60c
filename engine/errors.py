"""The one family of user-facing errors; each carries the exit code the CLI returns."""

from __future__ import annotations


class CadenceError(Exception):
    """A problem the user can fix; shown without a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"


class UsageError(CadenceError):
    """The command was called wrongly (missing option, bad WHEN, unreadable path)."""

    exit_code = 2


class InputError(CadenceError):
    """An input file (cadence, contact list) has problems; findings or failures."""

    exit_code = 1


class InternalError(CadenceError):
    """A bug in cadence-engine itself."""

    exit_code = 3


class NotFound(CadenceError):
    """What the command names (a task, an enrolment, a key, a token) does not exist."""

    exit_code = 1
