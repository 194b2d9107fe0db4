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
from typing import Any, Literal, Protocol

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
);
CREATE TABLE IF NOT EXISTS key_leases (  -- a key's requests, in every process that shares the store
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,  -- counts toward the rate for a minute
    running INTEGER NOT NULL DEFAULT 1,    -- 0 once its request ended
    expires_at DOUBLE PRECISION NOT NULL,  -- renewed while it runs; it holds nothing after this
    reserved BIGINT NOT NULL DEFAULT 0     -- tokens held for it against the day's limit, until settled
);
CREATE INDEX IF NOT EXISTS key_leases_by_key ON key_leases (key_id, started_at);
CREATE TABLE IF NOT EXISTS spoken_answers (  -- a spoken answer's text, for a follow-up that names its audio id
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    transcript TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
)
"""


@dataclass(frozen=True)
class Refusal:
    """Why a key's request may not start now, and in how many seconds to try again."""

    limit: Literal["rpm", "concurrency", "tokens"]
    retry_after: float | None  # None: not today (UTC)


RATE_WINDOW_S = 60.0


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
            self._add(run, key_id, day, tokens)

    def spent(self, key_id: str, day: str) -> int:
        with self._sql() as run:
            return self._spent(run, key_id, day)

    # --- spoken answers ----------------------------------------------------------------

    def remember_spoken(self, audio_id: str, owner: str, transcript: str, expires_at: float, now: float) -> None:
        """Keep a spoken answer's text until `expires_at` (and drop those past theirs)."""
        with self._sql(write=True) as run:
            run("DELETE FROM spoken_answers WHERE expires_at < ?", (now,))
            run("INSERT INTO spoken_answers (id, owner, transcript, expires_at) VALUES (?, ?, ?, ?)",
                (audio_id, owner, transcript, expires_at))  # fmt: skip

    def spoken(self, audio_id: str, owner: str, now: float) -> str | None:
        """The text of the spoken answer `audio_id` of `owner`, unless it expired."""
        with self._sql() as run:
            row = run("SELECT transcript FROM spoken_answers WHERE id = ? AND owner = ? AND expires_at >= ?",
                      (audio_id, owner, now)).fetchone()  # fmt: skip
        return str(row[0]) if row else None

    # --- key limits, across every process that shares the store ------------------------
    # A request of a key holds a lease from admission to its end. Leases started in the
    # last minute count toward its rate; running ones toward its concurrency; and the
    # tokens a lease holds count as spent until its request's spend is settled. A
    # process renews the leases of its running requests; one that dies stops renewing,
    # and its leases expire, running places and holds alike (an ended lease keeps its
    # hold one more expiry, for its settlement to land). Each step is one transaction
    # that first locks the key's row, so processes admitting for one key take turns.

    def admit(self, key: ApiKey, lease: str, now: float, day: str, ttl: float) -> Refusal | None:
        """Start a lease for a request of `key` (running until `now + ttl`), or say
        which of its limits refuses it: requests per minute, requests at once, or
        tokens today (spent, and held by its other requests)."""
        with self._sql(write=True) as run:
            self._lock_key(run, key.id)
            run("DELETE FROM key_leases WHERE key_id = ? AND started_at <= ? AND expires_at <= ?",
                (key.id, now - RATE_WINDOW_S, now))  # fmt: skip  # what no limit reads any more
            if key.rpm is not None:
                recent = run("SELECT COUNT(*), MIN(started_at) FROM key_leases WHERE key_id = ? AND started_at > ?",
                             (key.id, now - RATE_WINDOW_S)).fetchone()  # fmt: skip
                if int(recent[0]) >= key.rpm:
                    return Refusal("rpm", float(recent[1]) + RATE_WINDOW_S - now)
            running, held = self._running(run, key.id, now)
            if key.concurrency is not None and running >= key.concurrency:
                return Refusal("concurrency", 1.0)
            if key.tokens_per_day is not None and self._spent(run, key.id, day) + held >= key.tokens_per_day:
                return Refusal("tokens", 1.0 if held else None)  # held: some may come back when those end
            run("INSERT INTO key_leases (id, key_id, started_at, running, expires_at, reserved) "
                "VALUES (?, ?, ?, 1, ?, 0)", (lease, key.id, now, now + ttl))  # fmt: skip
        return None

    def reserve(self, key: ApiKey, lease: str, now: float, day: str, tokens: int) -> int:
        """Hold up to `tokens` in all of the key's day for its lease `lease` (this
        replaces what it held): what is left once its spend and its other requests'
        holds are counted. Without a daily limit, all of them."""
        if key.tokens_per_day is None:
            return tokens
        with self._sql(write=True) as run:
            self._lock_key(run, key.id)
            _, held = self._running(run, key.id, now, besides=lease)
            granted = max(0, min(tokens, key.tokens_per_day - self._spent(run, key.id, day) - held))
            run("UPDATE key_leases SET reserved = ? WHERE id = ?", (granted, lease))
        return granted

    def renew(self, leases: Sequence[str], until: float) -> None:
        """Keep running leases alive until `until` (ended ones are left to expire)."""
        if not leases:
            return
        marks = ", ".join("?" for _ in leases)
        with self._sql(write=True) as run:
            run(f"UPDATE key_leases SET expires_at = ? WHERE running = 1 AND id IN ({marks})", (until, *leases))

    def end(self, lease: str, until: float) -> None:
        """The request is over: it no longer runs (it still counts toward the rate,
        and holds its tokens until they are settled, or `until`)."""
        with self._sql(write=True) as run:
            run("UPDATE key_leases SET running = 0, expires_at = ? WHERE id = ?", (until, lease))

    def settle(self, key_id: str, lease: str, day: str, tokens: int) -> None:
        """Count the `tokens` a request spent to its key's day, and free what it held, at once."""
        with self._sql(write=True) as run:
            self._lock_key(run, key_id)
            self._add(run, key_id, day, tokens)
            run("UPDATE key_leases SET reserved = 0 WHERE id = ?", (lease,))

    def _lock_key(self, run: Run, key_id: str) -> None:
        run("SELECT id FROM api_keys WHERE id = ?" + self._for_update, (key_id,))

    def _running(self, run: Run, key_id: str, now: float, besides: str = "") -> tuple[int, int]:
        """How many of the key's requests run, and the tokens its leases hold."""
        row = run("SELECT COALESCE(SUM(running), 0), COALESCE(SUM(reserved), 0) FROM key_leases "
                  "WHERE key_id = ? AND expires_at > ? AND id <> ?", (key_id, now, besides)).fetchone()  # fmt: skip
        return int(row[0]), int(row[1])

    @staticmethod
    def _add(run: Run, key_id: str, day: str, tokens: int) -> None:
        run("INSERT INTO key_usage (key_id, day, tokens) VALUES (?, ?, ?) ON CONFLICT (key_id, day) "
            "DO UPDATE SET tokens = key_usage.tokens + excluded.tokens", (key_id, day, tokens))  # fmt: skip

    @staticmethod
    def _spent(run: Run, key_id: str, day: str) -> int:
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
