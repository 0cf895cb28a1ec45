"""The embedded job queue: one SQLite file (WAL) holds every queue and its dead-letter queue.

Several processes on one host share the file: SQLite's locks make each receive an atomic claim, so two
consumers never hold one message at the same time. A lease is a fresh random receipt stored on the row with a
wall-clock ``visible_at``; a row is visible when ``visible_at`` has passed, so an expired lease needs no sweeper.
The dead-letter queue of ``NAME`` is the queue ``NAME-dlq`` in the same table, as with SQS.

Waking a long poll. A consumer that finds nothing waits on a Condition shared by every queue object on the
same file in this process, so a send from another thread wakes it at once. A send from *another process*
cannot reach that Condition; for it the waiter polls ``PRAGMA data_version``, which changes when another
connection commits and costs a read of the WAL index in shared memory (a few microseconds, no disk, no lock).
The poll starts at 1 ms after the waiter last saw a change and backs off to 16 ms, so an idle consumer wakes
about 60 times a second (well under 1 % of a core) and a cross-process message still arrives in ≤ ~16 ms. It
also never sleeps past the moment the earliest delayed message or expired lease in its queue becomes due.
Alternatives considered: a unix datagram socket per waiter (lowest latency, but socket paths are capped at
108 bytes, stale sockets of killed processes need cleaning, and macOS lacks abstract sockets) and inotify on
the WAL (Linux only). The measured figures are in docs/benchmarks/queue.md.

Tail latency (measured, docs/benchmarks/queue.md): writers of one process take turns on a Lock instead of in
SQLite's sleeping busy handler; across processes a lock wait is retried every ≤ 2 ms (_run); and a thread per
process copies the WAL back into the file (checkpoint) so that no sender or consumer stalls on it.

Durability: ``synchronous=NORMAL`` in WAL mode survives a crash of any process; a power cut may lose the
last commits (the bot re-queues orders that stay queued). ``FULL`` would fsync three times per job.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import uuid
import weakref
from pathlib import Path

from cloud.queues import _checks
from cloud.queues.base import DeadLetter, JobQueue, Lease, LeaseExpired, QueueDepth, QueueError

BUSY_TIMEOUT_S = 30.0
BUSY_SLEEPS_S = (0.0002, 0.0005, 0.001, 0.002)  # then 2 ms until BUSY_TIMEOUT_S
CHECKPOINT_EVERY_S = 1.0
WAL_BACKSTOP_PAGES = (
    10_000  # SQLite checkpoints on commit only if the checkpointer thread falls this far behind
)
POLL_MIN_S = 0.001
POLL_MAX_S = 0.016

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    receipt TEXT,
    receive_count INTEGER NOT NULL DEFAULT 0,
    dead_reason TEXT
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (queue, visible_at);
"""


def _run(conn: sqlite3.Connection, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
    """Execute, retrying while another process holds the write lock.

    This is our busy timeout: SQLite's own handler sleeps 1, 2, 5, 10, 15, 20 … ms between tries, so two
    processes taking turns on the lock put a 30 ms tail on latency; short fixed sleeps keep it to a few ms at
    the cost of a few more tries while the lock is contended.
    """
    give_up = time.monotonic() + BUSY_TIMEOUT_S
    tries = 0
    while True:
        try:
            return conn.execute(sql, params)
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) and "busy" not in str(err):
                raise
            if time.monotonic() >= give_up:
                raise QueueError(f"queue database stayed locked for {BUSY_TIMEOUT_S:.0f} s: {err}") from None
            time.sleep(BUSY_SLEEPS_S[min(tries, len(BUSY_SLEEPS_S) - 1)])
            tries += 1


def _checkpoint_until(path: str, stop: threading.Event) -> None:
    """Copy the WAL back into the database file every CHECKPOINT_EVERY_S, off the senders' and consumers' path.

    Left to SQLite, the commit that crosses 1,000 WAL pages does the checkpoint itself, fsync included, and the
    consumer or sender that made it stalls for 10-30 ms on a busy disk: that was the whole p99 tail across
    processes (bursts of late messages every ~300 round trips, measured). PASSIVE never waits for anyone.
    """
    conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        while not stop.wait(CHECKPOINT_EVERY_S):
            # locked or busy this time: the next round (or the backstop) does it
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()


class _Hub:
    """What every queue object on one file in this process shares: the wake-up Condition, the write turn and
    the checkpointer thread (stopped when the last queue object on the file goes away)."""

    def __init__(self, path: str) -> None:
        self.cond = threading.Condition()
        self.generation = 0
        # Writers of one process take turns here rather than in SQLite's busy handler, which sleeps 1, 2, 5,
        # 10 … ms between tries and so put a 15-25 ms tail on in-process latency (measured).
        self.write_lock = threading.Lock()
        stop = threading.Event()
        thread = threading.Thread(
            target=_checkpoint_until, args=(path, stop), name="photogen-queue-checkpoint", daemon=True
        )
        thread.start()
        weakref.finalize(self, stop.set)

    def notify(self) -> None:
        with self.cond:
            self.generation += 1
            self.cond.notify_all()


_hubs: weakref.WeakValueDictionary[str, _Hub] = weakref.WeakValueDictionary()
_hubs_lock = threading.Lock()


def _forget_parent_state() -> None:
    # A forked child must not touch the parent's SQLite connections or locks (a lock may be held mid-fork).
    global _hubs, _hubs_lock
    _hubs = weakref.WeakValueDictionary()
    _hubs_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_state)


def _hub_for(path: str) -> _Hub:
    with _hubs_lock:
        hub = _hubs.get(path)
        if hub is None:
            hub = _Hub(path)
            _hubs[path] = hub
        return hub


class SqliteQueue(JobQueue):
    """One named queue (and ``NAME-dlq``) in a SQLite file; safe to share between threads and processes."""

    def __init__(self, path: str | os.PathLike[str], name: str, max_receives: int = 5) -> None:
        if isinstance(max_receives, bool) or not isinstance(max_receives, int) or max_receives < 1:
            raise ValueError(f"max_receives must be a positive integer, got {max_receives!r}")
        self.name = _checks.check_name(name)
        self.dlq_name = _checks.check_name(f"{name}-dlq")
        self.max_receives = max_receives
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        self.path = str(file.resolve())
        self._attach()
        self._closed = False
        conn = self._conn()
        # journal_mode is persistent in the file; setting it under a busy timeout is safe when processes race.
        mode = _run(conn, "PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise QueueError(
                f"{self.path}: SQLite refused WAL mode (got {mode}); is it on a network filesystem?"
            )
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                _run(conn, statement)

    # --- connections ---------------------------------------------------------------------------------------
    def _attach(self) -> None:
        self._pid = os.getpid()
        self._hub = _hub_for(self.path)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            self._attach()  # forked: the parent's connections stay the parent's (never closed from here)
        if self._closed:
            self._drop_own_connection()
            raise QueueError(f"queue {self.name} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # One connection per thread: sqlite3 connections must not be used by two threads at once.
            # timeout=0: lock waits are retried by _run, not by SQLite's busy handler.
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
            _run(conn, "PRAGMA synchronous=NORMAL")
            _run(conn, f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close this thread's connection now; every other thread closes its own on its next call (which then
        raises QueueError). Closing a connection another thread is executing on can crash CPython's sqlite3
        module (a segfault was seen when the bot closed its queues while its alert thread read a depth)."""
        self._closed = True
        self._drop_own_connection()

    def _drop_own_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return
        self._local.conn = None
        with self._conns_lock:
            if conn in self._conns:
                self._conns.remove(conn)
        conn.close()

    def _read(self, sql: str, params: tuple | dict = ()) -> tuple | None:
        return _run(self._conn(), sql, params).fetchone()

    def _aggregate(self, sql: str, params: tuple | dict = ()) -> tuple:
        """The row of an aggregate query or a PRAGMA, which SQLite always returns."""
        row = self._read(sql, params)
        if row is None:
            raise QueueError(f"SQLite returned no row for {sql!r}")
        return row

    def _write(self, sql: str, params: tuple | dict) -> sqlite3.Cursor:
        conn = self._conn()
        with self._hub.write_lock:
            return _run(conn, sql, params)

    # --- the interface -------------------------------------------------------------------------------------
    def send(self, body: str, delay_s: int = 0) -> str:
        _checks.check_body(body)
        _checks.check_seconds("delay_s", delay_s, _checks.MAX_SEND_DELAY_S)
        message_id = uuid.uuid4().hex
        now = time.time()
        self._write(
            "INSERT INTO messages (id, queue, body, sent_at, visible_at) VALUES (?, ?, ?, ?, ?)",
            (message_id, self.name, body, now, now + delay_s),
        )
        if not delay_s:
            self._hub.notify()
        return message_id

    def receive(self, max_messages: int = 1, wait_s: float = 0, lease_s: int = 30) -> list[Lease]:
        _checks.check_receive(max_messages, wait_s, lease_s)
        self._conn()  # first, so a forked child attaches to its own hub before waiting on it
        give_up = time.monotonic() + wait_s
        poll = POLL_MIN_S
        while True:
            with self._hub.cond:
                generation = self._hub.generation
            version = self._data_version()
            leases = self._take(max_messages, lease_s)
            if leases:
                return leases
            due_in = self._next_due_in()
            # Wait for an in-process notify, a commit by another process, or a delayed/expired message coming due.
            while True:
                left = give_up - time.monotonic()
                if left <= 0:
                    return []
                timeout = min(poll, left, due_in)
                with self._hub.cond:
                    if self._hub.generation == generation:
                        self._hub.cond.wait(timeout)
                    woken = self._hub.generation != generation
                if woken or self._data_version() != version:
                    poll = POLL_MIN_S
                    break
                due_in -= timeout
                if due_in <= 0:
                    break
                poll = min(poll * 2, POLL_MAX_S)

    def extend(self, lease: Lease, lease_s: int) -> None:
        _checks.check_seconds("lease_s", lease_s, _checks.MAX_LEASE_S)
        started = time.monotonic()
        now = time.time()
        self._owned_update(lease, "UPDATE messages SET visible_at = ?", (now + lease_s,), "extend")
        lease.deadline = started + lease_s

    def ack(self, lease: Lease) -> None:
        self._owned_update(lease, "DELETE FROM messages", (), "ack")

    def release(self, lease: Lease, delay_s: int = 0) -> None:
        _checks.check_seconds("delay_s", delay_s, _checks.MAX_LEASE_S)
        self._owned_update(
            lease, "UPDATE messages SET receipt = NULL, visible_at = ?", (time.time() + delay_s,), "release"
        )
        if not delay_s:
            self._hub.notify()

    def dead_letter(self, lease: Lease, reason: str) -> None:
        self._owned_update(
            lease,
            "UPDATE messages SET queue = ?, receipt = NULL, receive_count = 0, visible_at = ?, dead_reason = ?",
            (self.dlq_name, time.time(), reason[:1000]),
            "dead-letter",
        )

    def depth(self) -> QueueDepth:
        row = self._aggregate(
            "SELECT COALESCE(SUM(visible_at <= :now), 0),"
            " COALESCE(SUM(visible_at > :now AND receipt IS NOT NULL), 0),"
            " COALESCE(SUM(visible_at > :now AND receipt IS NULL), 0)"
            " FROM messages WHERE queue = :queue",
            {"now": time.time(), "queue": self.name},
        )
        return QueueDepth(visible=row[0], in_flight=row[1], delayed=row[2])

    def dead_letter_depth(self) -> int:
        return self._aggregate("SELECT COUNT(*) FROM messages WHERE queue = ?", (self.dlq_name,))[0]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = _run(
            self._conn(),
            "SELECT id, body, dead_reason, sent_at FROM messages WHERE queue = ? ORDER BY seq LIMIT ?",
            (self.dlq_name, max(0, int(limit))),
        ).fetchall()
        return [DeadLetter(message_id, body, reason, sent_at) for message_id, body, reason, sent_at in rows]

    def redrive(self, message_id: str) -> bool:
        cursor = self._write(
            "UPDATE messages SET queue = ?, receipt = NULL, receive_count = 0, visible_at = ?, dead_reason = NULL"
            " WHERE id = ? AND queue = ?",
            (self.name, time.time(), message_id, self.dlq_name),
        )
        if cursor.rowcount != 1:
            return False
        self._hub.notify()
        return True

    def purge(self) -> None:
        self._write("DELETE FROM messages WHERE queue IN (?, ?)", (self.name, self.dlq_name))

    # --- the parts ------------------------------------------------------------------------------------------
    def _data_version(self) -> int:
        return self._aggregate("PRAGMA data_version")[0]

    def _next_due_in(self) -> float:
        """Seconds until the earliest invisible message of this queue becomes visible (inf if none)."""
        row = self._aggregate(
            "SELECT MIN(visible_at) FROM messages WHERE queue = ? AND visible_at > ?",
            (self.name, time.time()),
        )
        return float("inf") if row[0] is None else max(0.0, row[0] - time.time())

    def _take(self, max_messages: int, lease_s: float) -> list[Lease]:
        # A read first: an empty queue costs no write lock, so idle consumers never contend with senders.
        due = "SELECT 1 FROM messages WHERE queue = ? AND visible_at <= ? LIMIT 1"
        if self._read(due, (self.name, time.time())) is None:
            return []
        conn = self._conn()
        with self._hub.write_lock:
            return self._take_locked(conn, max_messages, lease_s)

    def _take_locked(self, conn: sqlite3.Connection, max_messages: int, lease_s: float) -> list[Lease]:
        _run(conn, "BEGIN IMMEDIATE")
        started = time.monotonic()
        now = time.time()
        try:
            # Delivered max_receives times and never acked: dead-letter instead of delivering it again.
            conn.execute(
                "UPDATE messages SET queue = :dlq, receipt = NULL, receive_count = 0, visible_at = :now,"
                " dead_reason = 'received ' || receive_count || ' times without ack (max_receives '"
                " || :max || ')'"
                " WHERE queue = :queue AND visible_at <= :now AND receive_count >= :max",
                {"dlq": self.dlq_name, "now": now, "queue": self.name, "max": self.max_receives},
            )
            rows = conn.execute(
                "UPDATE messages SET receipt = lower(hex(randomblob(16))), receive_count = receive_count + 1,"
                " visible_at = :until"
                " WHERE seq IN (SELECT seq FROM messages WHERE queue = :queue AND visible_at <= :now"
                "               ORDER BY visible_at, seq LIMIT :n)"
                " RETURNING seq, id, body, receipt, receive_count, sent_at, dead_reason",
                {"until": now + lease_s, "queue": self.name, "now": now, "n": max_messages},
            ).fetchall()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        rows.sort()
        return [
            Lease(
                message_id=message_id,
                body=body,
                receipt=receipt,
                receive_count=count,
                queue_name=self.name,
                deadline=started + lease_s,
                sent_at=sent_at,
                attributes={_checks.DEAD_LETTER_REASON: reason} if reason else {},
            )
            for _, message_id, body, receipt, count, sent_at, reason in rows
        ]

    def _owned_update(self, lease: Lease, statement: str, params: tuple, what: str) -> None:
        """Run ``statement`` on the lease's row only while the lease still owns it; else LeaseExpired."""
        if lease.queue_name != self.name:
            raise ValueError(f"lease is from queue {lease.queue_name}, not {self.name}")
        cursor = self._write(
            f"{statement} WHERE id = ? AND queue = ? AND receipt = ? AND visible_at > ?",
            (*params, lease.message_id, self.name, lease.receipt, time.time()),
        )
        if cursor.rowcount != 1:
            raise LeaseExpired(f"{what} on {self.name}: the lease of message {lease.message_id} ran out")
