"""Load a cadence file and check it: the one entry point every command uses."""

from __future__ import annotations

from pathlib import Path

from engine.loader import load_data
from engine.model import Cadence


def load_cadence(path: Path) -> Cadence:
    """Load, validate and build a cadence; raises InputError naming file:line:col."""
    return Cadence.from_data(load_data(path), source=str(path))
