"""End to end: learning from channel history and the privacy commands over the fake Discord.

One bot (Message Content intent on) serves the module; the tests run in file order and build on
each other: the server opts in, #story's history (with bots, a webhook, commands, links, code,
mentions, an opted-out member, joins and a thread created) is read in pages under a rate limit
and learned, each message read learned or counted as left out, bob sees his
data, a second server learns the opted-out member (consent is per server), then bob forgets his
data: no row, file byte or export keeps his sentence, and the retrained model does not say it.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.fake_discord import FakeChannel, FakeMessage, FakeUser
from tests.fake_discord.bot_process import make_bot_process
from tests.fake_discord.fixtures import BotEnv, module_bot_env
from tests.fake_discord.server import FakeDiscord

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
ARTICLE = (REPO / "data" / "belling-the-cat.txt").read_text(encoding="utf-8")
# bob's sentence: its first words are the article's ("the old mouse said ..."), but bob says it
# more often, so a model that learned him continues "the old mouse" his way.
BOB_SENTENCE = "the old mouse whispered secrets to the purple walrus ."
BOB_WORDS = ("whispered", "walrus")
TRAIN_TIMEOUT = 120.0
BOT_CONFIG = {
    "discord": {"message_content": True},
    "cooldowns": {"continue_seconds": 0.0},
    "workers": {"count": 1},
    "history": {"max_messages": 400, "default_messages": 50},
    "training": {"units": 32, "embedding_dim": 16, "max_epochs": 300, "max_seconds": 60.0},
}


async def _second_server(fake: FakeDiscord, tmp_path: Path) -> None:
    """A second server (bob and carol are members of both) and global commands for it."""
    world = fake.world
    assert world is not None
    owner = fake.add_user("dora")
    guild = fake.add_guild("Other Server", owner=owner)
    fake.add_channel(guild, "tale")
    fake.add_member(guild, "bob", user=world.member)
    fake.add_member(guild, "carol", user=_carol(fake))
    sync = make_bot_process(fake, tmp_path, {}, args=("sync",), name="sync")
    await sync.start(wait_identify=False)
    assert await sync.wait_exit(60.0) == 0, sync.log_tail()


def _carol(fake: FakeDiscord) -> FakeUser:
    world = fake.world
    assert world is not None
    found = next((m.user for m in world.guild.members.values() if m.user.username == "carol"), None)
    return found or fake.add_member(world.guild, "carol")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    async with module_bot_env(
        tmp_path_factory,
        "discord-privacy",
        BOT_CONFIG,
        command_names=("train", "privacy"),
        allow_privileged_intents=True,
        prepare=_second_server,
    ) as started:
        yield started


@pytest.fixture(autouse=True)
def _clean_api_use(env: BotEnv) -> Iterator[None]:
    yield
    env.fake.assert_no_unknown_requests()
    env.fake.assert_no_violations()


def _other(env: BotEnv) -> tuple[Any, FakeChannel, FakeUser]:
    guild = next(g for g in env.fake.guilds.values() if g.name == "Other Server")
    channel = next(c for c in guild.channels.values() if c.name == "tale")
    return guild, channel, env.fake.users[guild.owner_id]


async def _command(
    env: BotEnv,
    name: str,
    options: dict[str, object] | None = None,
    *,
    user: FakeUser,
    channel: FakeChannel | None = None,
    subcommand: str | None = None,
    ephemeral: bool = True,
) -> FakeMessage:
    handle = await env.fake.send_slash_command(
        name,
        options or {},
        subcommand=subcommand,
        user=user,
        channel=channel or env.world.channel,
    )
    reply = await handle.wait_reply(30.0)
    assert reply.ephemeral == ephemeral and not reply.pings_anyone(), reply.text()
    return reply


def _db(env: BotEnv) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{env.bot.db_path}?mode=ro", uri=True)


def _rows(env: BotEnv, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    db = _db(env)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


async def _active_version(env: BotEnv, channel: FakeChannel, version: int) -> None:
    sql = (
        "SELECT m.version FROM channels c JOIN models m ON m.id = c.active_model_id "
        "WHERE c.channel_id = ?"
    )
    await env.fake.wait_until(
        lambda: _rows(env, sql, (channel.id,)) == [(version,)],
        TRAIN_TIMEOUT,
        f"model v{version} active in #{channel.name}",
    )


# -- tests, in order ---------------------------------------------------------------------------


async def test_history_needs_the_server_to_opt_in(env: BotEnv) -> None:
    w = env.world
    refused = await _command(env, "train", {"source": "history"}, user=w.admin)
    assert "has not allowed learning from channel history" in refused.text()
    denied = await _command(env, "privacy", {"history": "on"}, user=w.member, subcommand="server")
    assert "Manage Server" in denied.text()
    status = await _command(env, "privacy", user=w.member, subcommand="server")
    assert "**off**" in status.text()
    allowed = await _command(env, "privacy", {"history": "on"}, user=w.owner, subcommand="server")
    assert "**on**" in allowed.text()


async def test_history_training_counts_every_message_read(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    carol = _carol(fake)
    robot = fake.add_user("robot", bot=True)
    opted = await _command(env, "privacy", user=carol, subcommand="optout")
    assert "will not read or learn your messages" in opted.text()
    erin = fake.add_member(w.guild, "erin")
    sentences = [s.strip() + " ." for s in ARTICLE.split(" . ") if s.strip()]
    # system messages: bob and erin joined (type 7), alice created a thread (type 18)
    history: list[tuple[FakeUser, str]] = [(w.member, ""), (erin, "")]
    history += [(w.admin, s) for s in sentences]
    history += [(w.admin, "moonlit plans"), (w.member, BOB_SENTENCE)]
    history += [(w.member, BOB_SENTENCE)] * 3
    history += [
        (carol, "carol hums a xylophone tune ."),
        (w.admin, "!play quasar music"),
        (w.member, "/roll nebula dice"),
        (w.admin, "$balance zeppelin"),
        (w.admin, f"thanks <@{w.member.id}> for the mouse tale and see https://example.com/zz"),
        (w.admin, "```python\nprint('codeword')\n```"),
        (w.member, "webhook says gargoyle"),
    ]
    history += [(robot, f"beep zorblax {i}") for i in range(220)]  # three pages of history
    webhook_at = 2 + len(sentences) + 1 + 4 + 6
    thread_at = 2 + len(sentences)
    fake.add_history(w.channel, history, webhook_ids={webhook_at: 424242},
                     types={0: 7, 1: 7, thread_at: 18})  # fmt: skip
    limited = fake.inject_rate_limit(
        "GET /channels/{channel_id}/messages", count=1, retry_after=0.5
    )

    reply = await _command(env, "train", {"source": "history", "messages": 400, "seed": 1},
                           user=w.admin)  # fmt: skip
    text = reply.text()
    assert "Training job #" in text and "#story's history" in text, text
    learned = len(sentences) + 4 + 1  # the article, bob's four, the mention (cleaned)
    assert f"Learning {learned} messages of {len(history)} read" in text, text
    assert (
        "(left out: 3 system messages (joins, threads created, pins), 221 from bots or "
        "webhooks, 3 commands, 1 from members who opted out, 1 with " in text
    ), text
    counts = re.search(r"Learning (\d+) messages of (\d+) read \(left out: (.*?)\), from ", text)
    assert counts is not None, text
    left_out = [int(n) for n in re.findall(r"(?:^|, )(\d+) ", counts[3])]
    assert int(counts[1]) + sum(left_out) == int(counts[2]), text
    await _active_version(env, w.channel, 1)

    pages = [r for r in fake.history_pages if r.path.endswith(f"/channels/{w.channel.id}/messages")]
    assert len(pages) >= 3 and all(int(p.query["limit"]) <= 100 for p in pages)
    assert all("before" in p.query for p in pages)  # the first: before the reading message
    assert len(limited.served) == 1 and limited.passed, "the 429 was not retried"
    reading = [m for m in fake.messages(w.channel) if m.kind == "channel"
               and any("Reading" in str(h.get("content")) for h in m.history)]  # fmt: skip
    assert reading, "no live progress while reading"
    shown = [str(h.get("content")) for h in reading[0].history]
    last_read = [text for text in shown if "Reading" in text][-1]
    assert f"{len(history):,} / {len(history):,} messages" in last_read, last_read

    authors = {a for (a,) in _rows(env, "SELECT DISTINCT author_id FROM story_messages")}
    assert authors == {w.admin.id, w.member.id}
    (story_text,) = _rows(env, "SELECT text FROM stories")[0]
    for gone in ("xylophone", "quasar", "nebula", "zeppelin", "https", "example", "codeword",
                 "zorblax", "gargoyle", "moonlit", "<@", str(w.member.id)):  # fmt: skip
        assert gone not in story_text, gone
    assert "thanks ◇ for the mouse tale" in story_text

    # Greedy: "the old mouse" also begins a line of the article's story, and a sampled reply
    # may take either; only Bob's learned message goes on from "whispered secrets to".
    continued = await _command(env, "continue",
                               {"prompt": "whispered secrets to", "length": 4, "temperature": 0.0},
                               user=w.member, ephemeral=False)  # fmt: skip
    assert "secrets to the purple walrus" in continued.content, continued.content
    card = await _command(env, "story", user=w.member, subcommand="show", ephemeral=False)
    assert "Learned from: the history of #story" in card.text(), card.text()
    assert f"{learned} messages from" in card.text()


async def test_mydata_shows_a_members_messages(env: BotEnv) -> None:
    w = env.world
    reply = await _command(env, "privacy", user=w.member, subcommand="mydata")
    assert "Your messages in stories learned from channel history: 4" in reply.text()
    data = json.loads(reply.file("fabulist-my-data.json").data)
    assert [m["text"] for m in data["history_messages"]] == [BOB_SENTENCE] * 4
    assert data["uploaded_stories"] == [] and data["opted_out"] is False
    carol = await _command(env, "privacy", user=_carol(env.fake), subcommand="mydata")
    assert "You have opted out" in carol.text() and not carol.attachments


async def test_consent_is_per_server(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    _, tale, dora = _other(env)
    await _command(env, "privacy", {"history": "on"}, user=dora, channel=tale,
                   subcommand="server")  # fmt: skip
    fake.add_history(tale, [
        (_carol(fake), "carol sings about the moon over the tale server ."),
        (w.member, "bob likes the tale server too ."),
        (dora, "dora keeps the lighthouse lamp burning all night ."),
    ])  # fmt: skip
    reply = await _command(env, "train", {"source": "history", "seed": 1}, user=dora,
                           channel=tale)  # fmt: skip
    assert "Learning 3 messages" in reply.text(), reply.text()
    await _active_version(env, tale, 1)
    authors = {
        a
        for (a,) in _rows(
            env,
            "SELECT m.author_id FROM story_messages m JOIN stories s ON s.id = m.story_id "
            "WHERE s.channel_id = ?",
            (tale.id,),
        )
    }
    assert _carol(fake).id in authors  # carol opted out of the first server only


async def test_forget_deletes_a_members_text_everywhere_in_the_server(env: BotEnv) -> None:
    w = env.world
    _, tale, _ = _other(env)
    kept = await _command(env, "privacy", {"confirm": False}, user=w.member, subcommand="forget")
    assert "Nothing was deleted" in kept.text()
    reply = await _command(env, "privacy", {"confirm": True}, user=w.member, subcommand="forget")
    assert "Deleted your data in 1 channel" in reply.text(), reply.text()
    assert "1 history story rebuilt" in reply.text() and "Retraining" in reply.text()
    await _active_version(env, w.channel, 2)
    # the channel's retraining message says what happened: story #1 was rebuilt, not removed
    [retraining] = await env.fake.wait_until(
        lambda: [m for m in env.fake.messages(w.channel) if "the remaining stories" in m.content],
        30.0,
        "the retraining's progress message",
    )
    label = "the remaining stories, after a member's data was deleted (/privacy forget)"
    assert label in retraining.content, retraining.content

    assert _rows(env, "SELECT count(*) FROM story_messages m JOIN stories s ON s.id = "
                 "m.story_id WHERE m.author_id = ? AND s.channel_id = ?",
                 (w.member.id, w.channel.id)) == [(0,)]  # fmt: skip
    assert _rows(env, "SELECT count(*) FROM jobs WHERE requested_by = ?", (w.member.id,)) == [(0,)]
    assert _rows(env, "SELECT count(*) FROM models m WHERE m.channel_id = ? AND m.version = 1",
                 (w.channel.id,)) == [(0,)]  # fmt: skip
    # the other server's story keeps bob's message there: /privacy forget is per server
    assert _rows(env, "SELECT count(*) FROM story_messages m JOIN stories s ON s.id = "
                 "m.story_id WHERE m.author_id = ? AND s.channel_id = ?",
                 (w.member.id, tale.id)) == [(1,)]  # fmt: skip
    database = Path(env.bot.db_path)
    for file in database.parent.glob(database.name + "*"):
        content = file.read_bytes()
        for word in BOB_WORDS:
            assert word.encode() not in content, f"{word!r} is still in {file.name}"

    continued = await _command(env, "continue", {"prompt": "the old mouse", "length": 6},
                               user=w.admin, ephemeral=False)  # fmt: skip
    assert not any(word in continued.content for word in BOB_WORDS), continued.content
    exported = await _command(env, "story", user=w.admin, subcommand="export")
    [attachment] = exported.attachments
    with zipfile.ZipFile(io.BytesIO(exported.file(attachment.filename).data)) as archive:
        for name in archive.namelist():
            for word in BOB_WORDS:
                assert word.encode() not in archive.read(name), f"{word!r} in the export's {name}"
