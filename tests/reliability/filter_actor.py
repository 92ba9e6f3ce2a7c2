"""Process B of the cross-process filter test: changes a server's word filters through the
facade, as an admin's ``/filter`` does in another bot process (another shard on PostgreSQL, a
second process on the SQLite file).

    python -m tests.reliability.filter_actor STORAGE_URL GUILD_ID CHANNEL_ID add|remove WORD

Prints ``add WORD COUNT`` (or ``remove ...``) once the change is committed.
"""

from __future__ import annotations

import asyncio
import sys

from bot.app import open_app
from bot.config import load_config
from bot.core.api import ChannelRef, Member

ADMIN = Member(user_id=1, display_name="admin", is_admin=True)


async def main(url: str, guild_id: int, channel_id: int, verb: str, word: str) -> None:
    config = load_config(data={"storage": {"url": url}}, environ={})
    async with open_app(config, warm_workers=False) as app:
        channel = ChannelRef(guild_id, channel_id)
        if verb == "add":
            change = await app.service.add_filter(channel, ADMIN, word)
        else:
            change = await app.service.remove_filter(channel, ADMIN, word)
    print(f"{verb} {change.word} {change.count}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]))
