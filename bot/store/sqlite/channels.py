"""Channels: forgetting one, and its running totals."""

from __future__ import annotations

from bot.core.store import ChannelCounters
from bot.store.sqlite.connection import SqliteBase


class ChannelTables(SqliteBase):
    async def forget_channel(self, channel_id: int) -> bool:
        """Delete the channel with its stories, models and jobs. True if it existed."""
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM channels WHERE channel_id = ?", (channel_id,))
            return cursor.rowcount > 0

    async def count_reply(self, channel_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE channels SET replies = replies + 1 WHERE channel_id = ?", (channel_id,)
            )

    async def channel_counters(self, channel_id: int) -> ChannelCounters:
        async with self._lock:
            replies = await self._scalar(
                "SELECT replies FROM channels WHERE channel_id = ?", (channel_id,)
            )
            trainings = await self._scalar(
                "SELECT count(*) FROM jobs WHERE channel_id = ? AND state = 'done' "
                "AND coalesce(json_extract(options, '$.mode'), '') != 'import'",
                (channel_id,),
            )
        return ChannelCounters(trainings=int(trainings or 0), replies=int(replies or 0))
