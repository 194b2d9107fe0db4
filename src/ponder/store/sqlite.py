"""The store in one SQLite file in the data dir: the default, for one server.

WAL journaling and one transaction per write: a killed process loses at most the
write in flight, never one that returned, and the file is never corrupt. (With
`synchronous=NORMAL` a power cut may also drop the last commits before a
checkpoint.) One connection, used by one thread at a time.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ponder.store.base import SCHEMA, Run, Store

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
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable at each checkpoint, never corrupt
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._db:
            self._db.executescript(SCHEMA)
            for table, column, decl in MIGRATIONS:
                if column not in {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

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
