"""The embedded default store: one SQLite file (aiosqlite), implementing
``bot.core.store.StoryStore``.

``connection`` holds the plumbing (one connection, one lock, explicit transactions, PRAGMAs, the
schema's upgrade through ``bot.store.schema``) and what is SQLite's own (claiming a job, the
shard plan's clock); the aggregates' statements are written once for both backends in
``bot.store.aggregates``.
"""

from __future__ import annotations

from bot.store.aggregates.channels import ChannelTables
from bot.store.aggregates.filters import FilterTables
from bot.store.aggregates.privacy import PrivacyTables
from bot.store.aggregates.shards import ShardTables
from bot.store.sqlite.connection import UNAVAILABLE_MESSAGE, SqliteBase


class SqliteStoryStore(SqliteBase, PrivacyTables, ChannelTables, FilterTables, ShardTables):
    """The bot's only database connection. Create with ``await SqliteStoryStore.open(path)``."""


__all__ = ["UNAVAILABLE_MESSAGE", "SqliteStoryStore"]
