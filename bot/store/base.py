"""What the aggregates (``bot.store.aggregates``) need of a backend: connections, transactions and
the few rules that differ by backend.

``SqliteBase`` (``bot.store.sqlite.connection``) and ``PostgresBase``
(``bot.store.postgres.connection``) implement it: the dialect-specific part of the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import ClassVar

from bot.core.store import now_iso
from bot.store.sql import Connection, Sql

ENSURE_CHANNEL = Sql(
    "INSERT INTO channels (channel_id, guild_id, name, created_at) "
    "VALUES (:channel_id, :guild_id, :name, :created_at) ON CONFLICT (channel_id) DO UPDATE SET "
    "name = coalesce(excluded.name, channels.name), "
    "guild_id = coalesce(channels.guild_id, excluded.guild_id)"
)
# Inside a write transaction: hold the channel's row until it ends (PostgreSQL; SQLite's write
# transaction already holds the whole database).
LOCK_CHANNEL = Sql(
    "SELECT 1 FROM channels WHERE channel_id = :channel_id",
    postgresql="SELECT 1 FROM channels WHERE channel_id = :channel_id FOR UPDATE",
)


class StoreBase:
    """A backend's plumbing, as the aggregates see it."""

    owner: str
    # Owners (see bot.owner) of the stores open in this process, per backend.
    _open_owners: ClassVar[set[str]]

    def _read(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for reading (SQLite: the connection under the store's lock)."""
        raise NotImplementedError

    def _transaction(self) -> AbstractAsyncContextManager[Connection]:
        """A connection inside a write transaction, committed at the end of the block."""
        raise NotImplementedError

    def _snapshot_read(self) -> AbstractAsyncContextManager[Connection]:
        """Reads that see one instant of the database."""
        raise NotImplementedError

    async def checkpoint(self) -> None:
        """After deleting text: make it leave the files (SQLite's WAL; nothing on PostgreSQL)."""
        raise NotImplementedError

    async def _live_owners(self, db: Connection, owners: Sequence[str | None]) -> set[str]:
        """Those of ``owners`` whose process is alive."""
        raise NotImplementedError

    async def _ensure_channel(
        self, db: Connection, channel_id: int, guild_id: int | None, name: str | None
    ) -> None:
        """Create or update the channel's row (PostgreSQL: which locks it until the commit)."""
        await db.execute(
            ENSURE_CHANNEL,
            channel_id=channel_id,
            guild_id=guild_id,
            name=name,
            created_at=now_iso(),
        )
