"""End to end over the fake Discord: word filters (per server), the "Continue this" message
context menu, and the retraining after /story remove shown live in the channel.

One bot serves the module; the tests run in file order and build on each other: #story learns
the article, which says "cat"; the server filters it; a second server imports the same model and
still hears it; "Continue this" continues messages; a removal's retraining shows its progress.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.fake_discord import FakeChannel, FakeMessage, FakeUser
from tests.fake_discord.fixtures import BotEnv, module_bot_env
from tests.fake_discord.handles import InteractionHandle
from tests.fake_discord.models import Perm

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
ARTICLE = (REPO / "data" / "belling-the-cat.txt").read_bytes()
CHAPTER = b"the old cat slept by the fire while the young mice danced about the kitchen ."
TRAIN_TIMEOUT = 90.0
CANCEL = "fabulist:cancel:"
BOT_CONFIG = {
    "cooldowns": {"continue_seconds": 0.0},
    "workers": {"count": 1},
    "training": {"units": 32, "embedding_dim": 16, "max_epochs": 300, "max_seconds": 60.0},
}
PROMPT = "to outwit their common enemy"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    async with module_bot_env(
        tmp_path_factory,
        "discord-filters",
        BOT_CONFIG,
        command_names=("train", "filter", "continue", "Continue this"),
    ) as started:
        yield started


@pytest.fixture(autouse=True)
def _clean_api_use(env: BotEnv) -> Iterator[None]:
    yield
    env.fake.assert_no_unknown_requests()
    env.fake.assert_no_violations()


async def _command(
    env: BotEnv,
    name: str,
    options: dict[str, object],
    *,
    user: FakeUser,
    channel: FakeChannel,
    subcommand: str | None = None,
) -> FakeMessage:
    handle = await env.fake.send_slash_command(
        name, options, subcommand=subcommand, user=user, channel=channel
    )
    reply = await handle.wait_reply(30.0)
    assert not reply.pings_anyone()
    return reply


async def _filter(env: BotEnv, sub: str, word: str | None = None, **kw: object) -> FakeMessage:
    options: dict[str, object] = {} if word is None else {"word": word}
    user = kw.get("user", env.world.admin)
    channel = kw.get("channel", env.world.channel)
    assert isinstance(user, FakeUser) and isinstance(channel, FakeChannel)
    return await _command(env, "filter", options, subcommand=sub, user=user, channel=channel)


async def _continue(
    env: BotEnv, prompt: str, channel: FakeChannel, user: FakeUser, **options: object
) -> FakeMessage:
    return await _command(
        env, "continue", {"prompt": prompt, **options}, user=user, channel=channel
    )


async def _continue_this(env: BotEnv, message: FakeMessage, user: FakeUser) -> InteractionHandle:
    return await env.fake.send_message_command("Continue this", message, user=user)


def _words(reply: FakeMessage) -> list[str]:
    body = reply.content.split("\n-# ")[0]
    return re.findall(r"\w+", body.lower())


async def _finished(env: BotEnv, channel: FakeChannel, version: int) -> FakeMessage:
    return await env.fake.wait_until(
        lambda: next(
            (
                m
                for m in env.fake.messages(channel)
                if m.kind == "channel"
                and re.match(r"\*\*(Finished|Imported)\*\*", m.content)
                and f"model v{version}" in m.content
            ),
            None,
        ),
        TRAIN_TIMEOUT,
        f"the finished message of model v{version}",
    )


# -- tests, in order ---------------------------------------------------------------------------


async def test_commands_are_registered_as_discord_shows_them(env: BotEnv) -> None:
    commands = env.fake.commands[env.world.guild.id]
    group = commands["filter"].data
    assert {o["name"] for o in group["options"]} == {"add", "remove", "list"}
    assert str(group["default_member_permissions"]) == str(Perm.MANAGE_CHANNELS)
    menu = commands["Continue this"].data
    assert menu["type"] == 3 and not menu.get("description") and not menu.get("options")


async def test_the_model_says_cat_before_any_filter(env: BotEnv) -> None:
    channel = env.world.channel
    attachment = env.fake.add_attachment("belling-the-cat.txt", ARTICLE, channel=channel)
    await _command(
        env, "train", {"story": attachment, "seed": 1}, user=env.world.admin, channel=channel
    )
    await _finished(env, channel, 1)
    reply = await _continue(env, PROMPT, channel, env.world.member, length=4)
    assert "cat" in _words(reply), reply.content
    sampled = [
        await _continue(env, "the mice", channel, env.world.member, temperature=1.0, seed=seed)
        for seed in range(20)
    ]
    assert sum("cat" in _words(r) for r in sampled) >= 5


async def test_only_admins_manage_filters_and_answers_are_private(env: BotEnv) -> None:
    denied = await _filter(env, "add", "cat", user=env.world.member)
    assert denied.ephemeral and "permission" in denied.text()
    added = await _filter(env, "add", "CAT")
    assert added.ephemeral and "Filtered “CAT”" in added.text()
    again = await _filter(env, "add", "Cát")
    assert again.ephemeral and "already filtered" in again.text()
    await _filter(env, "add", "笨蛋")
    listing = await _filter(env, "list")
    assert listing.ephemeral and "2 filtered words" in listing.text()
    assert "CAT" in listing.text() and "笨蛋" in listing.text()
    removed = await _filter(env, "remove", "笨蛋")
    assert removed.ephemeral and "no longer filtered" in removed.text()
    missing = await _filter(env, "remove", "dog")
    assert missing.ephemeral and "not filtered" in missing.text()


async def test_a_filtered_word_is_never_generated(env: BotEnv) -> None:
    channel = env.world.channel
    greedy = await _continue(env, PROMPT, channel, env.world.member, length=4)
    assert not greedy.ephemeral and "cat" not in _words(greedy), greedy.content
    sampled = [
        await _continue(env, "the mice", channel, env.world.member, temperature=1.0, seed=seed)
        for seed in range(40)
    ]
    assert all(not r.ephemeral and "cat" not in _words(r) for r in sampled)
    refused = await _continue(env, "the Cat", channel, env.world.member)
    assert refused.ephemeral and "filters" in refused.text()


async def test_filters_are_per_server(env: BotEnv) -> None:
    fake = env.fake
    exported = await _command(
        env, "story", {}, subcommand="export", user=env.world.admin, channel=env.world.channel
    )
    [attachment] = exported.attachments
    data = exported.file(attachment.filename).data
    other_guild = fake.add_guild("Other Server")
    channel = fake.add_channel(other_guild, "tales")
    admin = fake.add_member(other_guild, "carol", permissions=Perm.MANAGE_CHANNELS)
    # The commands as a global `sync` registers them, so the other server has them too.
    fake.commands[None] = {
        name: dataclasses.replace(cmd, guild_id=None)
        for name, cmd in fake.commands[env.world.guild.id].items()
    }
    upload = fake.add_attachment(attachment.filename, data, channel=channel)
    await _command(env, "train", {"story": upload}, user=admin, channel=channel)
    await _finished(env, channel, 1)
    reply = await _continue(env, PROMPT, channel, admin, length=4)
    assert "cat" in _words(reply), reply.content  # the same model, another server: no filter
    listing = await _filter(env, "list", user=admin, channel=channel)
    assert "no words" in listing.text()
    env.shared["other"] = (channel, admin)


async def test_continue_this_continues_a_message(env: BotEnv) -> None:
    channel, member = env.world.channel, env.world.member
    message = await env.fake.post_user_message(channel, member, "And so they met " + PROMPT)
    handle = await _continue_this(env, message, member)
    reply = await handle.wait_reply(20.0)
    assert not reply.ephemeral and not reply.pings_anyone()
    # The message's last words (up to the longest context a model reads), then the story
    # (sampled, as every reply by default).
    shown = "…and so they met " + PROMPT
    assert reply.content.startswith(shown), reply.content
    assert len(_words(reply)) > len(re.findall(r"\w+", shown)), reply.content
    assert "cat" not in _words(reply) and "-# model v1" in reply.content
    assert {c.split(":")[1] for c in reply.custom_ids()} == {"reroll", "more"}
    # The bot's own reply continues too (its footer and escapes are not story words).
    again = await (await _continue_this(env, reply, env.world.admin)).wait_reply(20.0)
    assert not again.ephemeral and again.content.startswith("…")
    # In the other server the same words continue with "cat".
    other, admin = env.shared["other"]
    assert isinstance(other, FakeChannel) and isinstance(admin, FakeUser)
    there = await env.fake.post_user_message(other, admin, PROMPT)
    reply = await (await _continue_this(env, there, admin)).wait_reply(20.0)
    assert "cat" in _words(reply), reply.content


async def test_continue_this_names_the_words_the_story_never_uses(env: BotEnv) -> None:
    channel, member = env.world.channel, env.world.member
    message = await env.fake.post_user_message(channel, member, "zebra walrus umbrella")
    reply = await (await _continue_this(env, message, member)).wait_reply(20.0)
    assert not reply.ephemeral and not reply.pings_anyone()
    body, note, _ = reply.content.rsplit("\n", 2)
    # The prompt, then a sampled continuation (which may begin with punctuation).
    prompt = "…zebra walrus umbrella"
    assert body.startswith(prompt) and len(body) > len(prompt) + 1, body
    assert "cat" not in _words(reply), body
    assert note == "-# I didn't know 'zebra', 'walrus' or 'umbrella'.", reply.content


@pytest.mark.parametrize(
    ("content", "where", "expected"),
    [
        ("", "story", "no words to continue"),
        ("!!! ???", "story", "no words to continue"),
        ("the CAT", "story", "filters"),
        ("the mice", "other", "No story has been trained"),
    ],
)
async def test_continue_this_errors_are_private_and_friendly(
    env: BotEnv, content: str, where: str, expected: str
) -> None:
    channel = env.world.channel if where == "story" else env.world.other_channel
    message = await env.fake.post_user_message(channel, env.world.member, content)
    reply = await (await _continue_this(env, message, env.world.member)).wait_reply(20.0)
    assert reply.ephemeral and expected in reply.text(), reply.text()
    assert not reply.pings_anyone()


async def test_a_story_with_a_filtered_word_is_trained_without_it(env: BotEnv) -> None:
    channel = env.world.channel
    attachment = env.fake.add_attachment("chapter.txt", CHAPTER, channel=channel)
    reply = await _command(
        env,
        "train",
        {"story": attachment, "seed": 1, "mode": "append"},
        user=env.world.admin,
        channel=channel,
    )
    assert reply.ephemeral and "1 word this server filters was left out" in reply.content
    await _finished(env, channel, 2)
    listing = await _command(
        env, "story", {}, subcommand="list", user=env.world.admin, channel=channel
    )
    env.shared["chapter"] = int(re.findall(r"`#(\d+)` chapter\.txt", listing.text())[0])


async def test_story_remove_shows_the_retraining_live_with_cancel(env: BotEnv) -> None:
    channel = env.world.channel
    chapter = env.shared["chapter"]
    before = {m.id for m in env.fake.messages(channel)}
    removed = await _command(
        env, "story", {"id": chapter}, subcommand="remove", user=env.world.admin, channel=channel
    )
    assert "Retraining on the remaining stories" in removed.text()
    progress = await env.fake.wait_for_message(
        lambda m: (
            m.id not in before
            and m.kind == "channel"
            and any(c.startswith(CANCEL) for c in m.custom_ids())
        ),
        channel=channel,
        timeout=15.0,
    )
    assert f"after story #{chapter} (chapter.txt) was removed" in progress.content
    assert not progress.pings_anyone()
    done = await _finished(env, channel, 3)
    assert done.id == progress.id  # the same message now shows the end, without Cancel
    assert "the remaining stories" in done.content and not done.custom_ids()
    assert any(re.search(r"epoch \d+(/| of about)", h.get("content") or "") for h in done.history)
