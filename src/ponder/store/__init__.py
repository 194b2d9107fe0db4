"""The store: stored Responses API responses, the web app's conversations and the API
keys. One interface (`Store`, in `base.py`) over two databases: a SQLite file in the
data dir (the default, for one server) or PostgreSQL (`[store] url`), which several
servers behind a load balancer share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ponder.store.base import ApiKey, Conversation, Store, StoredResponse, key_hash
from ponder.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from ponder.config import Settings

__all__ = ["ApiKey", "Conversation", "SqliteStore", "Store", "StoredResponse", "key_hash", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store `settings` name: PostgreSQL at `[store] url`, or else `ponder.db` in
    the data dir."""
    if settings.store.url:
        from ponder.store.postgres import PostgresStore  # psycopg loads only for those who use it

        return PostgresStore(settings.store.url)
    return SqliteStore(settings.data_dir / "ponder.db")
