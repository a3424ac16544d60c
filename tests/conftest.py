"""Shared fixtures: paths to the real example files the suite runs against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.postgres import Server
from tests.helpers.postgres import postgres_server as start_postgres

ROOT = Path(__file__).resolve().parent.parent
CADENCES = ROOT / "cadences"


@pytest.fixture
def example_cadence_path() -> Path:
    return CADENCES / "heads-of-platform.yaml"


@pytest.fixture
def example_contacts_path() -> Path:
    return CADENCES / "contacts.csv"


# --- PostgreSQL (tests/helpers/postgres.py): one server per test session, a fresh
# migrated database per test that asks for `postgres_url`.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    yield from start_postgres()


@pytest.fixture
def postgres_url(postgres_server: Server) -> Iterator[str]:
    dsn = postgres_server.database()
    yield dsn
    postgres_server.drop(dsn)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """CADENCE_DB of a fresh store: a SQLite file, then a PostgreSQL database (the runner
    end-to-end tests run on both)."""
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    url: str = request.getfixturevalue("postgres_url")
    return url
