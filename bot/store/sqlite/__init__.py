"""The embedded default store: one SQLite file (aiosqlite), implementing
``bot.core.store.StoryStore``.

``connection`` holds the plumbing (one connection, one lock, explicit transactions, PRAGMAs) and
the migrations of ``schema.sql``; one module per aggregate holds its SQL: ``channels``, ``filters``,
``stories``, ``jobs``, ``models``, ``privacy`` (consent and a member's data), ``shards`` (the
shard plan).
"""

from __future__ import annotations

from bot.store.sqlite.channels import ChannelTables
from bot.store.sqlite.connection import UNAVAILABLE_MESSAGE, load_migrations
from bot.store.sqlite.filters import FilterTables
from bot.store.sqlite.privacy import PrivacyTables
from bot.store.sqlite.shards import ShardTables


class SqliteStoryStore(PrivacyTables, ChannelTables, FilterTables, ShardTables):
    """The bot's only database connection. Create with ``await SqliteStoryStore.open(path)``."""


__all__ = ["UNAVAILABLE_MESSAGE", "SqliteStoryStore", "load_migrations"]
