"""The store: stored Responses API responses, the web app's conversations and the
API keys, in one SQLite file in the data dir.

WAL journaling and one transaction per write: a killed process loses at most the
write in flight, never one that returned, and the file is never corrupt. (With
`synchronous=NORMAL` a power cut may also drop the last commits before a
checkpoint.) Each row keeps what the API returns (the response object and its
input items) and what a follow-up needs to continue the conversation (`history`:
every message so far, this response's answer included).

Responses and conversations belong to the API key that made them (`owner`, the
key's id; "" when the server runs without keys): every read, change and delete
names its owner, so one key never sees another's. Keys are kept as SHA-256
hashes of the secret (which is random, 256 bits: a slow hash adds nothing), with
their limits and each day's token spend.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    body TEXT NOT NULL,         -- the response object, as JSON
    input_items TEXT NOT NULL,  -- the input items of this request, as a JSON list
    history TEXT NOT NULL       -- the conversation so far, as a JSON list of messages
);
CREATE TABLE IF NOT EXISTS conversations (   -- the web app's chats
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    messages TEXT NOT NULL,     -- as the app shows them: a JSON list
    search TEXT NOT NULL        -- title and message text, lower-cased, for search
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,        -- key_…: what owns stored things, and what `ponder keys` shows
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,  -- sha256 of the secret, hex
    prefix TEXT NOT NULL,       -- the secret's first characters, to tell keys apart
    created_at REAL NOT NULL,
    revoked_at REAL,
    rpm INTEGER,                -- requests per minute; NULL: no limit
    tokens_per_day INTEGER,
    concurrency INTEGER         -- requests at once
);
CREATE TABLE IF NOT EXISTS key_usage (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,          -- UTC, YYYY-MM-DD
    tokens INTEGER NOT NULL,
    PRIMARY KEY (key_id, day)
)
"""
# Columns added after the first release: (table, column, declaration).
MIGRATIONS = [
    ("responses", "owner", "TEXT NOT NULL DEFAULT ''"),
    ("conversations", "owner", "TEXT NOT NULL DEFAULT ''"),
]


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    created_at: float
    updated_at: float
    messages: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "created_at": self.created_at, "updated_at": self.updated_at}


def _words(title: str, messages: list[dict[str, Any]]) -> str:
    """What search looks in: the title and the messages' text, lower-cased (lone
    surrogates, which SQLite cannot store as text, replaced)."""
    words = " ".join([title, *(str(m.get("content") or "") for m in messages if isinstance(m, dict))]).lower()
    return words.encode("utf-8", "replace").decode("utf-8")


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


class Store:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
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

    def put(self, r: StoredResponse) -> None:
        row = (r.id, float(r.body.get("created_at", 0)), json.dumps(r.body), json.dumps(r.input_items),
               json.dumps(r.history), r.owner)  # fmt: skip
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO responses (id, created_at, body, input_items, history, owner) "
                             "VALUES (?, ?, ?, ?, ?, ?)", row)  # fmt: skip

    def get(self, response_id: str, owner: str = "") -> StoredResponse | None:
        with self._lock:
            row = self._db.execute("SELECT id, body, input_items, history FROM responses WHERE id = ? AND owner = ?",
                                   (response_id, owner)).fetchone()  # fmt: skip
        if row is None:
            return None
        return StoredResponse(row[0], json.loads(row[1]), json.loads(row[2]), json.loads(row[3]), owner)

    def delete(self, response_id: str, owner: str = "") -> bool:
        with self._lock, self._db:
            cur = self._db.execute("DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner))
            return cur.rowcount > 0

    # --- the web app's conversations ------------------------------------------------

    def save_conversation(self, c: Conversation, owner: str = "") -> None:
        row = (c.id, c.title, c.created_at, c.updated_at, json.dumps(c.messages), _words(c.title, c.messages), owner)
        with self._lock, self._db:
            self._db.execute("INSERT INTO conversations (id, title, created_at, updated_at, messages, search, owner) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)", row)  # fmt: skip

    def update_conversation(
        self, conversation_id: str, title: str | None, messages: list[dict[str, Any]] | None, now: float,
        owner: str = "",
    ) -> Conversation | None:  # fmt: skip
        """Change the title, the messages or both in one transaction; None if there is
        no such conversation (a deleted one stays deleted)."""
        with self._lock, self._db:
            row = self._db.execute("SELECT title, messages FROM conversations WHERE id = ? AND owner = ?",
                                   (conversation_id, owner)).fetchone()  # fmt: skip
            if row is None:
                return None
            title = row[0] if title is None else title
            kept = json.loads(row[1]) if messages is None else messages
            self._db.execute(
                "UPDATE conversations SET title = ?, updated_at = ?, messages = ?, search = ? WHERE id = ?",
                (title, now, json.dumps(kept), _words(title, kept), conversation_id),
            )
        return self.conversation(conversation_id, owner)

    def conversation(self, conversation_id: str, owner: str = "") -> Conversation | None:
        with self._lock:
            row = self._db.execute("SELECT id, title, created_at, updated_at, messages FROM conversations "
                                   "WHERE id = ? AND owner = ?", (conversation_id, owner)).fetchone()  # fmt: skip
        return Conversation(row[0], row[1], row[2], row[3], json.loads(row[4])) if row else None

    def conversations(self, query: str = "", limit: int = 200, owner: str = "") -> list[Conversation]:
        """Newest first; with `query`, those whose title or text holds it."""
        like = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._lock:
            rows = self._db.execute(
                "SELECT id, title, created_at, updated_at FROM conversations WHERE owner = ? AND search LIKE ? "
                "ESCAPE '\\' ORDER BY updated_at DESC LIMIT ?", (owner, like, limit)).fetchall()  # fmt: skip
        return [Conversation(r[0], r[1], r[2], r[3], []) for r in rows]

    def delete_conversation(self, conversation_id: str, owner: str = "") -> bool:
        with self._lock, self._db:
            cur = self._db.execute("DELETE FROM conversations WHERE id = ? AND owner = ?", (conversation_id, owner))
            return cur.rowcount > 0

    # --- API keys ---------------------------------------------------------------------

    def add_key(self, key: ApiKey, secret: str) -> None:
        row = (key.id, key.name, key_hash(secret), key.prefix, key.created_at, key.rpm, key.tokens_per_day,
               key.concurrency)  # fmt: skip
        with self._lock, self._db:
            self._db.execute("INSERT INTO api_keys (id, name, hash, prefix, created_at, rpm, tokens_per_day, "
                             "concurrency) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)  # fmt: skip

    def key_for(self, secret: str) -> ApiKey | None:
        """The live (unrevoked) key whose secret this is."""
        with self._lock:
            row = self._db.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ? AND revoked_at IS NULL",
                                   (key_hash(secret),)).fetchone()  # fmt: skip
        return ApiKey(*row) if row else None

    def api_keys(self) -> list[ApiKey]:
        with self._lock:
            rows = self._db.execute(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at").fetchall()
        return [ApiKey(*r) for r in rows]

    def revoke_key(self, key_id: str, now: float) -> bool:
        with self._lock, self._db:
            cur = self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                   (now, key_id))  # fmt: skip
            return cur.rowcount > 0

    def spend(self, key_id: str, day: str, tokens: int) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT INTO key_usage VALUES (?, ?, ?) ON CONFLICT (key_id, day) "
                             "DO UPDATE SET tokens = tokens + excluded.tokens", (key_id, day, tokens))  # fmt: skip

    def spent(self, key_id: str, day: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT tokens FROM key_usage WHERE key_id = ? AND day = ?",
                                   (key_id, day)).fetchone()  # fmt: skip
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
