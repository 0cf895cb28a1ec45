"""Two OS processes writing orders into one SQLite file at the same time: no lost rows, no "database is locked"."""

from __future__ import annotations

import multiprocessing as mp
import traceback
from pathlib import Path

from sqlalchemy import func
from sqlmodel import select

from storage import Order, credits, migrate, open_engine, order_store, read_session, standing, transaction

ORDERS_PER_WRITER = 60


def _writer(url: str, user: int, start: object, errors: object) -> None:
    start.wait(30)  # type: ignore[attr-defined]
    engine = None
    try:
        # Both processes start on a file that does not exist yet, as the bot and `photogen all` may: the
        # schema upgrade must serialise, not fail or run twice.
        migrate(url)
        engine = open_engine(url)
        for n in range(ORDERS_PER_WRITER):
            # Each order is its own transaction that reads before it writes (the bot checks the member's
            # limits, then writes the order) and also credits one shared member, so the two processes contend
            # for the write lock on every iteration; a deferred BEGIN would fail here with "database is locked".
            with transaction(engine) as s:
                order_store.active_order_count(s, user)
                order_store.get_user(s, "shared")
                order = order_store.create_order(
                    s, user_id=user, kind="render", charge=1, starting_credits=1000
                )
                order_store.mark_queued(s, order.id)
                credits.grant(s, None, "shared", 1, actor="test")
            if n % 10 == 0:
                with read_session(engine) as s:
                    order_store.orders_of_user(s, user, limit=5)
    except (
        Exception
    ):  # reported to the parent, which fails the test with it (the traceback says which statement)
        errors.put(traceback.format_exc(limit=-12))  # type: ignore[attr-defined]
        raise
    finally:
        if engine is not None:
            engine.dispose()


def test_two_processes_migrate_and_write_one_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    ctx = mp.get_context("spawn")
    start, errors = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, user, start, errors)) for user in (1, 2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    problems = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert problems == []
    assert [p.exitcode for p in procs] == [0, 0]

    engine = open_engine(url)
    try:
        with read_session(engine) as s:
            assert s.exec(select(func.count()).select_from(Order)).one() == 2 * ORDERS_PER_WRITER
            assert standing.credits_of(s, None, "shared") == 2 * ORDERS_PER_WRITER
            assert standing.credits_of(s, None, 1) == 1000 - ORDERS_PER_WRITER
            assert order_store.active_order_count(s, 2) == ORDERS_PER_WRITER
    finally:
        engine.dispose()


def _open_fresh(url: str, start: object, errors: object) -> None:
    start.wait(30)  # type: ignore[attr-defined]
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception:
        errors.put(traceback.format_exc(limit=-6))  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_processes_opening_a_new_file_together_all_get_wal_mode(tmp_path: Path) -> None:
    # Both ask SQLite to switch the new file to WAL at once; without a retry about a third of such races
    # failed with "database is locked" (the busy handler is not used for that switch).
    ctx = mp.get_context("fork")
    for attempt in range(20):
        url = f"sqlite:///{tmp_path / f'fresh-{attempt}.db'}"
        start, errors = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_open_fresh, args=(url, start, errors)) for _ in range(3)]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(60)
        assert errors.empty(), errors.get()
        engine = open_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        finally:
            engine.dispose()
