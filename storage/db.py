"""The SQLite engine, sessions and schema migrations of the order store.

SQLite runs in WAL mode (readers never block the writer) with a busy timeout, and Photogen issues its own
``BEGIN``: write transactions start with ``BEGIN IMMEDIATE`` so they take the write lock up front and wait in the
busy handler, instead of failing with "database is locked" when a deferred reader later tries to upgrade.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlmodel import Session

BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaError(RuntimeError):
    """The database's schema cannot be brought to this code's version (e.g. it was made by a newer Photogen)."""


# Execution option carried by the write engine; the "begin" hook reads it.
_IMMEDIATE = "photogen_begin_immediate"


def database_path(database_url: str) -> Path:
    """The file behind ``sqlite:///PATH`` (relative paths are relative to the working directory)."""
    if not database_url.startswith("sqlite:///"):
        raise ValueError(f"database URL must be sqlite:///PATH, got {database_url.split(':', 1)[0]}:…")
    path = database_url.removeprefix("sqlite:///").split("?", 1)[0]
    if not path or path == ":memory:":
        raise ValueError("database URL must name a file: the order store is shared between processes")
    return Path(path)


def open_engine(database_url: str) -> Engine:
    """An engine on the SQLite file of ``database_url``; creates the parent folder.

    Every connection gets WAL mode, a 30 s busy timeout and enforced foreign keys.
    """
    path = database_path(database_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    # timeout: the driver's own busy wait, the same as the PRAGMA below, so both layers agree.
    engine = create_engine(
        f"sqlite:///{path}", connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Hand transaction control to SQLAlchemy's "begin" hook below (pysqlite's legacy mode skips BEGIN
        # for SELECT and DDL, which breaks transactional migrations and repeatable reads).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _use_wal(cursor)
        cursor.execute(
            "PRAGMA synchronous = NORMAL"
        )  # durable in WAL mode except for the last commit on power loss
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_IMMEDIATE) else "BEGIN")

    return engine


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL mode (the file keeps it, so later connections only check).

    Two processes opening a brand-new file at once (the bot and an agent starting together) both ask for the
    switch; SQLite then answers one of them "database is locked" at once, without waiting in the busy handler
    (it would deadlock: each holds a shared lock and wants the exclusive one). That one retries until the other's
    switch is done. Measured: 85 of 300 such races failed without the retry.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _writer(engine: Engine) -> Engine:
    return engine.execution_options(**{_IMMEDIATE: True})


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A write transaction: commits when the block ends, rolls back on an exception.

    It holds SQLite's write lock from the start, so keep it short. Objects stay readable after the commit.
    """
    with Session(_writer(engine), expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A read-only snapshot (deferred BEGIN: never waits for the writer). Nothing is committed; rows read stay
    usable after the block (closing, unlike a rollback, does not expire them)."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


def alembic_config(database_url: str) -> Config:
    """Alembic's configuration for the migrations shipped inside this package (works from any cwd)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def migrate(database_url: str) -> None:
    """Bring the database to the newest schema (``alembic upgrade head``); a fresh file gets all of it.

    Safe to run from several processes at once: the upgrade runs in one IMMEDIATE transaction.
    """
    engine = open_engine(database_url)
    try:
        with _writer(engine).begin() as conn:
            cfg = alembic_config(database_url)
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except CommandError as err:
                raise SchemaError(
                    f"cannot upgrade the order store {database_path(database_url)}: {err} "
                    "(was it created by a newer Photogen?)"
                ) from None
    finally:
        engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The schema revision stamped in the database (None for an empty file)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest schema revision this code ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite:///unused.db")).get_current_head()
