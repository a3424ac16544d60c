"""cadence-engine: declarative YAML sales cadences, validated, compiled and run."""

from __future__ import annotations

from .errors import CadenceError, InputError, InternalError, UsageError
from .findings import Finding, Severity
from .model import Cadence, Step
from .validate import load_cadence

__all__ = [
    "Cadence",
    "CadenceError",
    "Finding",
    "InputError",
    "InternalError",
    "Severity",
    "Step",
    "UsageError",
    "load_cadence",
]
