"""The store: stored Responses API responses, in one SQLite file in the data dir.

WAL journaling and one transaction per write: a killed process loses at most the
write in flight, never one that returned, and the file is never corrupt. (With
`synchronous=NORMAL` a power cut may also drop the last commits before a
checkpoint.) Each row keeps what the API returns (the response object and its
input items) and what a follow-up needs to continue the conversation (`history`:
every message so far, this response's answer included).
"""

from __future__ import annotations

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


class Store:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable at each checkpoint, never corrupt
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def put(self, r: StoredResponse) -> None:
        row = (r.id, float(r.body.get("created_at", 0)), json.dumps(r.body), json.dumps(r.input_items),
               json.dumps(r.history))  # fmt: skip
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)", row)

    def get(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, body, input_items, history FROM responses WHERE id = ?", (response_id,)
            ).fetchone()
        if row is None:
            return None
        return StoredResponse(row[0], json.loads(row[1]), json.loads(row[2]), json.loads(row[3]))

    def delete(self, response_id: str) -> bool:
        with self._lock, self._db:
            return self._db.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount > 0

    # --- the web app's conversations ------------------------------------------------

    def save_conversation(self, c: Conversation) -> None:
        row = (c.id, c.title, c.created_at, c.updated_at, json.dumps(c.messages), _words(c.title, c.messages))
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO conversations VALUES (?, ?, ?, ?, ?, ?)", row)

    def update_conversation(
        self, conversation_id: str, title: str | None, messages: list[dict[str, Any]] | None, now: float
    ) -> Conversation | None:
        """Change the title, the messages or both in one transaction; None if there is
        no such conversation (a deleted one stays deleted)."""
        with self._lock, self._db:
            row = self._db.execute("SELECT title, messages FROM conversations WHERE id = ?",
                                   (conversation_id,)).fetchone()  # fmt: skip
            if row is None:
                return None
            title = row[0] if title is None else title
            kept = json.loads(row[1]) if messages is None else messages
            self._db.execute(
                "UPDATE conversations SET title = ?, updated_at = ?, messages = ?, search = ? WHERE id = ?",
                (title, now, json.dumps(kept), _words(title, kept), conversation_id),
            )
        return self.conversation(conversation_id)

    def conversation(self, conversation_id: str) -> Conversation | None:
        with self._lock:
            row = self._db.execute("SELECT id, title, created_at, updated_at, messages FROM conversations WHERE id = ?",
                                   (conversation_id,)).fetchone()  # fmt: skip
        return Conversation(row[0], row[1], row[2], row[3], json.loads(row[4])) if row else None

    def conversations(self, query: str = "", limit: int = 200) -> list[Conversation]:
        """Newest first; with `query`, those whose title or text holds it."""
        like = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._lock:
            rows = self._db.execute(
                "SELECT id, title, created_at, updated_at FROM conversations WHERE search LIKE ? ESCAPE '\\' "
                "ORDER BY updated_at DESC LIMIT ?", (like, limit)).fetchall()  # fmt: skip
        return [Conversation(r[0], r[1], r[2], r[3], []) for r in rows]

    def delete_conversation(self, conversation_id: str) -> bool:
        with self._lock, self._db:
            return self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
