"""Fixtures of the storage tests: a migrated SQLite order store in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from storage import migrate, open_engine


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'photogen.db'}"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    eng = open_engine(database_url)
    try:
        yield eng
    finally:
        eng.dispose()
