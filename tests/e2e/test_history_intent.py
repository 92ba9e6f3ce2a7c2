"""Without the Message Content intent (the default), /train source:history says how to turn it
on, reads nothing, and the fake Discord hides message text from such a bot as Discord does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_discord import FakeDiscord
from tests.fake_discord.bot_process import BotProcess, make_bot_process
from tests.fake_discord.fixtures import StartBot

pytestmark = pytest.mark.e2e
# No test here trains: the bots start their trainers at a first training (workers.warm).
COLD_TRAINERS = {"workers": {"warm": False}}


@pytest.fixture
async def bot(start_bot: StartBot) -> BotProcess:
    return await start_bot(COLD_TRAINERS)


async def test_history_without_the_intent_explains_how_to_enable_it(
    fake_discord: FakeDiscord, bot: BotProcess
) -> None:
    w = fake_discord.world
    assert w is not None
    fake_discord.add_history(w.channel, [(w.member, "a message the bot may not read")])
    handle = await fake_discord.send_slash_command(
        "train", {"source": "history"}, user=w.admin, channel=w.channel
    )
    reply = await handle.wait_reply(20.0)
    text = reply.text()
    assert reply.ephemeral and "Message Content" in text, text
    assert "Developer Portal" in text and "message_content = true" in text
    assert not fake_discord.history_pages  # nothing was read
    # workers.warm = false: connected and answering, no trainer started.
    assert "training worker" not in bot.log_text()
    both = await fake_discord.send_slash_command(
        "train", {"source": "file"}, user=w.admin, channel=w.channel
    )
    assert "Attach a story file" in (await both.wait_reply(20.0)).text()


async def test_fake_discord_hides_text_without_the_intent(
    fake_discord: FakeDiscord, bot: BotProcess
) -> None:
    """The fake's own rule, seen through discord.py's REST client in the bot's process is
    covered above; here the raw route: content is empty for a bot without the intent."""
    w = fake_discord.world
    assert w is not None
    fake_discord.add_history(w.channel, [(w.member, "secret text")])
    import aiohttp

    url = f"{fake_discord.api_base_url}/channels/{w.channel.id}/messages?limit=5"
    headers = {"Authorization": f"Bot {fake_discord.token}"}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        data = await response.json()
    assert [m["content"] for m in data] == [""]
    async with (
        aiohttp.ClientSession() as session,
        session.get(url.replace("limit=5", "limit=101"), headers=headers) as response,
    ):
        assert response.status == 400
    fake_discord.fail_on_violations = False  # the limit=101 request above, on purpose


async def test_intent_on_in_the_config_but_refused_by_discord_is_a_clear_error(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    w = fake_discord.world
    assert w is not None  # the fake refuses privileged intents, as an unticked portal box does
    config = {"discord": {"dev_guild_id": w.guild.id, "message_content": True}, **COLD_TRAINERS}
    proc = make_bot_process(fake_discord, tmp_path, config)
    await proc.start(wait_identify=False, wait_commands_for=False)
    assert await proc.wait_exit(60.0) == 2, proc.log_tail()
    assert "refused the Message Content intent" in proc.log_text()
    assert "Traceback" not in proc.log_text()
