"""The store in one SQLite file in the data dir: the default, for one server.

WAL journaling and one transaction per write: a killed process loses at most the
write in flight, never one that returned, and the file is never corrupt. (With
`synchronous=NORMAL` a power cut may also drop the last commits before a
checkpoint.) One connection, used by one thread at a time.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ponder.store.base import SCHEMA, Run, Store

BUSY_MS = 5000  # how long a statement waits for another connection's lock

# Columns added after the first release, for files made before: (table, column, declaration).
MIGRATIONS = [
    ("responses", "owner", "TEXT NOT NULL DEFAULT ''"),
    ("conversations", "owner", "TEXT NOT NULL DEFAULT ''"),
]


class SqliteStore(Store):
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.where = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        # Servers that start together on a new file race to switch it to WAL and make
        # the tables; SQLite answers some of those steps "locked" at once, without
        # waiting out busy_timeout, so they are retried until then. Both are no-ops
        # the second time.
        _when_free(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
        self._db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable at each checkpoint, never corrupt
        _when_free(self._make_tables)

    def _make_tables(self) -> None:
        with self._db:
            self._db.executescript(SCHEMA)
            for table, column, decl in MIGRATIONS:
                if column not in {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                    try:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
                    except sqlite3.OperationalError as e:  # another server opening the file added it first
                        if "duplicate column" not in str(e):
                            raise

    @contextmanager
    def _session(self, write: bool) -> Iterator[Run]:
        with self._lock:
            if not write:  # one statement, in a transaction of its own
                yield self._db.execute
                return
            # IMMEDIATE takes the write lock at once: another process's writer waits
            # (busy_timeout) rather than failing halfway through a read-then-write.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db.execute
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _when_free(step: Callable[[], object]) -> None:
    """`step()`, tried again while SQLite says the database is locked or busy, for up to BUSY_MS."""
    deadline = time.monotonic() + BUSY_MS / 1000
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as e:
            busy = "locked" in str(e) or "busy" in str(e)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
