"""The shared store: one PostgreSQL database (asyncpg) for several bot processes, implementing
``bot.core.store.StoryStore`` with the SQLite store's migration history and rules.

``connection`` holds the plumbing (pool, transactions, errors, migrations), ``owners`` the job
owners' liveness (advisory lock and lease), ``own`` what is PostgreSQL's own in the aggregates
(claiming a job with ``SKIP LOCKED``, the shard plan's clock); the aggregates' statements are
written once for both backends in ``bot.store.aggregates``. Install with
``pip install 'fabulist[postgres]'``.
"""

from __future__ import annotations

from bot.store.aggregates.channels import ChannelTables
from bot.store.aggregates.filters import FilterTables
from bot.store.aggregates.privacy import PrivacyTables
from bot.store.aggregates.shards import ShardTables
from bot.store.postgres.connection import (
    LOST_CONNECTION_MESSAGE,
    NOT_ANSWERING_MESSAGE,
    UNAVAILABLE_MESSAGE,
    session_settings,
)
from bot.store.postgres.own import PostgresOwn
from bot.store.url_password import redact_url


class PostgresStoryStore(PostgresOwn, PrivacyTables, ChannelTables, FilterTables, ShardTables):
    """A pool of connections to one PostgreSQL database: ``await PostgresStoryStore.open(url)``."""


__all__ = [
    "LOST_CONNECTION_MESSAGE",
    "NOT_ANSWERING_MESSAGE",
    "UNAVAILABLE_MESSAGE",
    "PostgresStoryStore",
    "redact_url",
    "session_settings",
]
