"""The shared store: one PostgreSQL database (asyncpg) for several bot processes, implementing
``bot.core.store.StoryStore`` with the SQLite store's migration history and rules.

``connection`` holds the plumbing (pool, transactions, errors, migrations), ``owners`` the job
owners' liveness (advisory lock and lease); one module per aggregate holds its SQL: ``channels``,
``filters``, ``stories``, ``jobs``, ``models``, ``privacy``, ``shards``. Install with
``pip install 'fabulist[postgres]'``.
"""

from __future__ import annotations

from bot.store.postgres.channels import ChannelTables
from bot.store.postgres.connection import (
    LOST_CONNECTION_MESSAGE,
    NOT_ANSWERING_MESSAGE,
    UNAVAILABLE_MESSAGE,
    load_postgres_migrations,
    session_settings,
)
from bot.store.postgres.filters import FilterTables
from bot.store.postgres.privacy import PrivacyTables
from bot.store.postgres.shards import ShardTables
from bot.store.url_password import redact_url


class PostgresStoryStore(PrivacyTables, ChannelTables, FilterTables, ShardTables):
    """A pool of connections to one PostgreSQL database: ``await PostgresStoryStore.open(url)``."""


__all__ = [
    "LOST_CONNECTION_MESSAGE",
    "NOT_ANSWERING_MESSAGE",
    "UNAVAILABLE_MESSAGE",
    "PostgresStoryStore",
    "load_postgres_migrations",
    "redact_url",
    "session_settings",
]
