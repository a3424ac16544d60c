"""Shared fixtures: paths to the real example files the suite runs against."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CADENCES = ROOT / "cadences"


@pytest.fixture
def example_cadence_path() -> Path:
    return CADENCES / "heads-of-platform.yaml"


@pytest.fixture
def example_contacts_path() -> Path:
    return CADENCES / "contacts.csv"
