"""Channels: forgetting one, and its running totals."""

from __future__ import annotations

from bot.core.store import ChannelCounters
from bot.store.postgres.connection import PostgresBase, rowcount


class ChannelTables(PostgresBase):
    async def forget_channel(self, channel_id: int) -> bool:
        """Delete the channel with its stories, models and jobs. True if it existed."""
        async with self._transaction() as db:
            status = await db.execute("DELETE FROM channels WHERE channel_id = $1", channel_id)
        return rowcount(status) > 0

    async def count_reply(self, channel_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE channels SET replies = replies + 1 WHERE channel_id = $1", channel_id
            )

    async def channel_counters(self, channel_id: int) -> ChannelCounters:
        async with self._read() as db:
            replies = await db.fetchval(
                "SELECT replies FROM channels WHERE channel_id = $1", channel_id
            )
            trainings = await db.fetchval(
                "SELECT count(*) FROM jobs WHERE channel_id = $1 AND state = 'done' "
                "AND coalesce(options::json ->> 'mode', '') <> 'import'",
                channel_id,
            )
        return ChannelCounters(trainings=int(trainings or 0), replies=int(replies or 0))
