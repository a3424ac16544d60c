"""cadence-engine: declarative YAML sales cadences, validated, compiled and run."""

from __future__ import annotations

from engine.errors import CadenceError, InputError, InternalError, UsageError
from engine.findings import Finding, Severity
from engine.model import Cadence, Step
from engine.validate import load_cadence

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
