"""The shipped Alembic migrations build exactly the SQLModel schema, from an empty file, from any cwd."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from storage import (
    current_revision,
    head_revision,
    migrate,
    models,  # noqa: F401 - the tables
    open_engine,
)


def test_migrations_from_empty_equal_the_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'photogen.db'}"
    monkeypatch.chdir("/")  # the migrations are found inside the package, not next to the cwd
    migrate(url)
    engine = open_engine(url)
    try:
        assert current_revision(engine) == head_revision() is not None
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, SQLModel.metadata)
            tables = {
                row[0] for row in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")
            }
        assert diff == [], f"migrations and models differ: {diff}"
        assert {
            "users",
            "guild_settings",
            "orders",
            "jobs",
            "trained_models",
            "images",
            "applied_events",
            "delivery_outbox",
            "audit_log",
            "alembic_version",
        } <= tables
    finally:
        engine.dispose()


def test_migrate_is_idempotent_and_relative_paths_follow_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    migrate("sqlite:///data/photogen.db")
    migrate("sqlite:///data/photogen.db")  # a second start changes nothing and does not fail
    assert (tmp_path / "data" / "photogen.db").is_file()


def test_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:

            def pragma(name: str) -> object:
                return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

            assert pragma("journal_mode") == "wal"
            assert pragma("busy_timeout") == 30000
            assert pragma("foreign_keys") == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("url", ["postgresql://x/y", "sqlite://", "sqlite:///:memory:"])
def test_open_engine_refuses_non_file_urls(url: str) -> None:
    with pytest.raises(ValueError, match="database URL"):
        open_engine(url)


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    from sqlalchemy.exc import IntegrityError

    from storage import order_store, transaction

    url = f"sqlite:///{tmp_path / 'fk.db'}"
    migrate(url)
    engine = open_engine(url)
    try:
        with pytest.raises(IntegrityError), transaction(engine) as s:
            order_store.add_job(s, "no-such-order", "train", {})
    finally:
        engine.dispose()
    assert os.path.exists(tmp_path / "fk.db")


def test_unknown_newer_schema_is_a_clear_error(tmp_path: Path) -> None:
    from storage import SchemaError

    url = f"sqlite:///{tmp_path / 'newer.db'}"
    migrate(url)
    engine = open_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    engine.dispose()
    with pytest.raises(SchemaError, match=r"9999_from_the_future.*newer Photogen"):
        migrate(url)
