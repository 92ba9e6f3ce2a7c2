"""Channels: forgetting one, and its running totals."""

from __future__ import annotations

from bot.core.store import ChannelCounters
from bot.store.base import StoreBase
from bot.store.sql import Sql

FORGET = Sql("DELETE FROM channels WHERE channel_id = :channel_id")
COUNT_REPLY = Sql("UPDATE channels SET replies = replies + 1 WHERE channel_id = :channel_id")
REPLIES = Sql("SELECT replies FROM channels WHERE channel_id = :channel_id")
TRAININGS = Sql(
    "SELECT count(*) FROM jobs WHERE channel_id = :channel_id AND state = 'done' "
    "AND coalesce(json_extract(options, '$.mode'), '') <> 'import'",
    postgresql="SELECT count(*) FROM jobs WHERE channel_id = :channel_id AND state = 'done' "
    "AND coalesce(CAST(options AS JSON) ->> 'mode', '') <> 'import'",
)


class ChannelTables(StoreBase):
    async def forget_channel(self, channel_id: int) -> bool:
        """Delete the channel with its stories, models and jobs. True if it existed."""
        async with self._transaction() as db:
            return await db.execute(FORGET, channel_id=channel_id) > 0

    async def count_reply(self, channel_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(COUNT_REPLY, channel_id=channel_id)

    async def channel_counters(self, channel_id: int) -> ChannelCounters:
        async with self._read() as db:
            replies = await db.fetchval(REPLIES, channel_id=channel_id)
            trainings = await db.fetchval(TRAININGS, channel_id=channel_id)
        return ChannelCounters(trainings=int(trainings or 0), replies=int(replies or 0))
