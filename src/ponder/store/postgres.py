"""The store in a PostgreSQL database, which several Ponder servers share: a response
stored through one can be retrieved and continued through another, and a key
revoked through one is refused by all. Set `[store] url` (or `PONDER_STORE_URL`)
to `postgresql://USER:PASSWORD@HOST:5432/DB`.

The tables are made at open if they are not there (under an advisory lock, so
servers that start together do not race), with the same SQL as SQLite's. Each
server keeps a few connections (psycopg 3), made when first needed; a connection
that broke is dropped and the next call makes a new one. A database that cannot be
reached is a 503 (`StoreUnavailable`), never a message that holds the password:
the URL is only ever shown with its password replaced by `***`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow

from ponder.errors import StoreUnavailable
from ponder.store.base import SCHEMA, Run, Store

log = logging.getLogger(__name__)

POOL_SIZE = 8  # connections per server; a call waits for one when all are busy
SCHEMA_LOCK = 0x706F6E646572  # "ponder": the advisory lock held while the tables are made
CONNECT_TIMEOUT_S = 10

Connection = psycopg.Connection[TupleRow]


class PostgresStore(Store):
    _for_update = " FOR UPDATE"

    def __init__(self, url: str):
        self.where = redacted(url)
        self._url = url
        self._pool = _Pool(self._connect, POOL_SIZE)
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                conn.execute(SCHEMA)  # several statements: allowed without parameters
        except psycopg.Error as e:
            self._pool.close()
            raise StoreUnavailable(f"cannot open the store at {self.where}: {self._scrub(str(e).strip())}") from None

    def _connect(self) -> Connection:
        return psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="ponder")

    @contextmanager
    def _session(self, write: bool) -> Iterator[Run]:
        try:
            with self._pool.connection() as conn:

                def run(sql: str, params: Sequence[Any]) -> psycopg.Cursor[TupleRow]:
                    return conn.execute(sql.replace("?", "%s"), params)

                if not write:  # one statement: autocommit
                    yield run
                    return
                with conn.transaction():
                    yield run
        except psycopg.OperationalError as e:  # the database went away, or could not be reached
            log.warning("the store at %s failed: %s", self.where, self._scrub(str(e)))
            raise StoreUnavailable("The store is unavailable; try again shortly.") from None

    def _scrub(self, text: str) -> str:
        """`text` without the password, however a driver's message quoted the URL."""
        text = text.replace(self._url, self.where)
        for secret in sorted(_passwords(self._url), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        self._pool.close()


class _Pool:
    """Up to `size` connections, made when first needed and kept for the next call;
    one that broke, or was left inside a transaction, or comes back after `close`,
    is closed instead."""

    def __init__(self, connect: Callable[[], Connection], size: int):
        self._connect = connect
        self._idle: list[Connection] = []
        self._free = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._free:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            conn = conn or self._connect()
            try:
                yield conn
            finally:
                with self._lock:
                    keep = not (self._closed or conn.broken or conn.closed)
                    if keep and conn.info.transaction_status == TransactionStatus.IDLE:
                        self._idle.append(conn)
                    else:
                        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


# The password's place in a URL: postgresql://USER:PASSWORD@HOST/…, or …?password=PASSWORD.
USERINFO_PASSWORD = re.compile(r"^([^:/?]+://[^:@/?]*:)([^/?]*)@")
QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#]*)")


def redacted(url: str) -> str:
    """`url` with its password, in the user part or the query, replaced by `***`."""
    return QUERY_PASSWORD.sub(r"\1***", USERINFO_PASSWORD.sub(r"\1***@", url))


def _passwords(url: str) -> set[str]:
    """The password in `url`, in every form a message might show it: as written,
    decoded and encoded."""
    written = [m.group(2) for m in (USERINFO_PASSWORD.search(url), *QUERY_PASSWORD.finditer(url)) if m]
    forms = {f for w in written for f in (w, unquote(w), quote(unquote(w), safe=""), quote(unquote(w)))}
    return forms - {""}
