"""The store's interface, and the SQL behind it: stored Responses API responses, the
web app's conversations and the API keys. SQLite (`sqlite.py`) and PostgreSQL
(`postgres.py`) run the same statements; each only says how a statement reaches
its database (`_sql`).

Each row keeps what the API returns (the response object and its input items) and
what a follow-up needs to continue the conversation (`history`: every message so
far, this response's answer included). JSON is kept as text, as `json.dumps`
wrote it, so both databases give back the same bytes.

Responses and conversations belong to the API key that made them (`owner`, the
key's id; "" when the server runs without keys): every read, change and delete
names its owner, so one key never sees another's. Keys are kept as SHA-256
hashes of the secret (which is random, 256 bits: a slow hash adds nothing), with
their limits and each day's token spend.

Every write is one transaction. Text is stored as UTF-8 without NUL characters
(PostgreSQL has no room for either a NUL or a lone surrogate): those become U+FFFD
and "?" on the way in, in both databases.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

# Plain SQL that both databases take (SQLite reads DOUBLE PRECISION as REAL and
# BIGINT as INTEGER).
SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,         -- the response object, as JSON
    input_items TEXT NOT NULL,  -- the input items of this request, as a JSON list
    history TEXT NOT NULL,      -- the conversation so far, as a JSON list of messages
    owner TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS conversations (   -- the web app's chats
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    messages TEXT NOT NULL,     -- as the app shows them: a JSON list
    search TEXT NOT NULL,       -- title and message text, lower-cased, for search
    owner TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,        -- key_…: what owns stored things, and what `ponder keys` shows
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,  -- sha256 of the secret, hex
    prefix TEXT NOT NULL,       -- the secret's first characters, to tell keys apart
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION,
    rpm INTEGER,                -- requests per minute; NULL: no limit
    tokens_per_day BIGINT,
    concurrency INTEGER         -- requests at once
);
CREATE TABLE IF NOT EXISTS key_usage (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,          -- UTC, YYYY-MM-DD
    tokens BIGINT NOT NULL,
    PRIMARY KEY (key_id, day)
)
"""


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    created_at: float
    updated_at: float
    messages: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass(frozen=True)
class StoredResponse:
    id: str
    body: dict[str, Any]
    input_items: list[dict[str, Any]]
    history: list[dict[str, Any]]
    owner: str = ""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    created_at: float
    revoked_at: float | None = None
    rpm: int | None = None
    tokens_per_day: int | None = None
    concurrency: int | None = None


KEY_COLUMNS = "id, name, prefix, created_at, revoked_at, rpm, tokens_per_day, concurrency"


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


class Rows(Protocol):
    """What a statement gives back (a DB-API cursor)."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


# Runs one statement, `?` marking its parameters.
Run = Callable[[str, Sequence[Any]], Rows]


class Store(ABC):
    """Stored responses, conversations and API keys. A subclass says how statements
    reach its database (`_session`); everything else is here, the same for both."""

    where: str  # what to show a person: a path, or a URL without its password
    _for_update = ""  # how a SELECT locks its rows, where the database can (SQLite locks the whole file)

    @abstractmethod
    def _session(self, write: bool) -> AbstractContextManager[Run]:
        """A way to run statements: with `write`, all of them in one transaction,
        committed when the block ends and rolled back if it raises."""

    @abstractmethod
    def close(self) -> None: ...

    @contextmanager
    def _sql(self, write: bool = False) -> Iterator[Run]:
        with self._session(write) as run:
            yield lambda sql, params: run(sql, _clean(params))

    # --- stored responses ------------------------------------------------------------

    def put(self, r: StoredResponse) -> None:
        """Store `r`, replacing any response with its id."""
        row = (r.id, float(r.body.get("created_at", 0)), json.dumps(r.body), json.dumps(r.input_items),
               json.dumps(r.history), r.owner)  # fmt: skip
        with self._sql(write=True) as run:
            run("INSERT INTO responses (id, created_at, body, input_items, history, owner) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, body = excluded.body, "
                "input_items = excluded.input_items, history = excluded.history, owner = excluded.owner",
                row)  # fmt: skip

    def get(self, response_id: str, owner: str = "") -> StoredResponse | None:
        with self._sql() as run:
            row = run("SELECT id, body, input_items, history FROM responses WHERE id = ? AND owner = ?",
                      (response_id, owner)).fetchone()  # fmt: skip
        if row is None:
            return None
        return StoredResponse(row[0], json.loads(row[1]), json.loads(row[2]), json.loads(row[3]), owner)

    def delete(self, response_id: str, owner: str = "") -> bool:
        with self._sql(write=True) as run:
            return run("DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner)).rowcount > 0

    # --- the web app's conversations ------------------------------------------------

    def save_conversation(self, c: Conversation, owner: str = "") -> None:
        """Store a new conversation; one with its id already there is an error."""
        row = (c.id, c.title, c.created_at, c.updated_at, json.dumps(c.messages), _words(c.title, c.messages), owner)
        with self._sql(write=True) as run:
            run("INSERT INTO conversations (id, title, created_at, updated_at, messages, search, owner) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", row)  # fmt: skip

    def update_conversation(
        self, conversation_id: str, title: str | None, messages: list[dict[str, Any]] | None, now: float,
        owner: str = "",
    ) -> Conversation | None:  # fmt: skip
        """Change the title, the messages or both in one transaction; None if there is
        no such conversation (a deleted one stays deleted)."""
        with self._sql(write=True) as run:
            # The row stays locked until the commit, so a concurrent change is not lost.
            row = run("SELECT title, created_at, messages FROM conversations WHERE id = ? AND owner = ?"
                      + self._for_update, (conversation_id, owner)).fetchone()  # fmt: skip
            if row is None:
                return None
            title = row[0] if title is None else _text(title)
            kept = json.loads(row[2]) if messages is None else messages
            run("UPDATE conversations SET title = ?, updated_at = ?, messages = ?, search = ? WHERE id = ?",
                (title, now, json.dumps(kept), _words(title, kept), conversation_id))  # fmt: skip
        return Conversation(conversation_id, title, row[1], now, kept)

    def conversation(self, conversation_id: str, owner: str = "") -> Conversation | None:
        with self._sql() as run:
            row = run("SELECT id, title, created_at, updated_at, messages FROM conversations "
                      "WHERE id = ? AND owner = ?", (conversation_id, owner)).fetchone()  # fmt: skip
        return Conversation(row[0], row[1], row[2], row[3], json.loads(row[4])) if row else None

    def conversations(self, query: str = "", limit: int = 200, owner: str = "") -> list[Conversation]:
        """Newest first; with `query`, those whose title or text holds it (any case)."""
        like = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._sql() as run:
            rows = run("SELECT id, title, created_at, updated_at FROM conversations WHERE owner = ? AND search LIKE ? "
                       "ESCAPE '\\' ORDER BY updated_at DESC LIMIT ?", (owner, like, limit)).fetchall()  # fmt: skip
        return [Conversation(r[0], r[1], r[2], r[3], []) for r in rows]

    def delete_conversation(self, conversation_id: str, owner: str = "") -> bool:
        with self._sql(write=True) as run:
            return run("DELETE FROM conversations WHERE id = ? AND owner = ?",
                       (conversation_id, owner)).rowcount > 0  # fmt: skip

    # --- API keys ---------------------------------------------------------------------

    def add_key(self, key: ApiKey, secret: str) -> None:
        row = (key.id, key.name, key_hash(secret), key.prefix, key.created_at, key.rpm, key.tokens_per_day,
               key.concurrency)  # fmt: skip
        with self._sql(write=True) as run:
            run("INSERT INTO api_keys (id, name, hash, prefix, created_at, rpm, tokens_per_day, concurrency) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)  # fmt: skip

    def key_for(self, secret: str) -> ApiKey | None:
        """The live (unrevoked) key whose secret this is. Nothing is cached: a revoked
        key is refused from the next request on, by every server on this store."""
        with self._sql() as run:
            row = run(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ? AND revoked_at IS NULL",
                      (key_hash(secret),)).fetchone()  # fmt: skip
        return ApiKey(*row) if row else None

    def api_keys(self) -> list[ApiKey]:
        with self._sql() as run:
            rows = run(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at", ()).fetchall()
        return [ApiKey(*r) for r in rows]

    def revoke_key(self, key_id: str, now: float) -> bool:
        with self._sql(write=True) as run:
            return run("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                       (now, key_id)).rowcount > 0  # fmt: skip

    def spend(self, key_id: str, day: str, tokens: int) -> None:
        """Add `tokens` to the key's spend on `day` (one statement: concurrent spends all count)."""
        with self._sql(write=True) as run:
            run("INSERT INTO key_usage (key_id, day, tokens) VALUES (?, ?, ?) ON CONFLICT (key_id, day) "
                "DO UPDATE SET tokens = key_usage.tokens + excluded.tokens", (key_id, day, tokens))  # fmt: skip

    def spent(self, key_id: str, day: str) -> int:
        with self._sql() as run:
            row = run("SELECT tokens FROM key_usage WHERE key_id = ? AND day = ?", (key_id, day)).fetchone()
        return int(row[0]) if row else 0


def _words(title: str, messages: list[dict[str, Any]]) -> str:
    """What search looks in: the title and the messages' text, lower-cased."""
    return " ".join([title, *(str(m.get("content") or "") for m in messages if isinstance(m, dict))]).lower()


def _clean(values: Sequence[Any]) -> tuple[Any, ...]:
    """`values`, with text made storable in both databases: a NUL becomes U+FFFD and a
    lone surrogate "?" (JSON from `json.dumps` is ASCII, and passes as it is)."""
    return tuple(_text(v) if isinstance(v, str) else v for v in values)


def _text(s: str) -> str:
    if "\x00" in s:
        s = s.replace("\x00", "\ufffd")
    return s if s.isascii() else s.encode("utf-8", "replace").decode("utf-8")
