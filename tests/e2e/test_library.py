"""End to end: the story library over the fake Discord (the real bot process, tiny models).

One bot serves the module; the tests run in file order and build on each other: #story learns
the article, appends a chapter, removes it (a retraining follows), rolls back and forth, and is
exported; the export is imported into #other, and a tampered copy is refused in a third channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from tests.fake_discord import FakeChannel, FakeMessage, FakeUser
from tests.fake_discord.fixtures import BotEnv, module_bot_env
from tests.fake_discord.handles import InteractionHandle

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
ARTICLE = (REPO / "data" / "belling-the-cat.txt").read_bytes()
CHAPTER = (
    b"later the zebra quietly painted purple umbrellas while the walrus sang about copper "
    b"lanterns . the zebra quietly painted purple umbrellas again and the walrus sang louder ."
)
TRAIN_TIMEOUT = 90.0
BOT_CONFIG = {
    "cooldowns": {"continue_seconds": 0.0},
    "workers": {"count": 1},
    "training": {"units": 32, "embedding_dim": 16, "max_epochs": 300, "max_seconds": 60.0},
}


Env = BotEnv


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    async with module_bot_env(
        tmp_path_factory, "discord-library", BOT_CONFIG, command_names=("train", "story")
    ) as started:
        yield started


@pytest.fixture(autouse=True)
def _clean_api_use(env: Env) -> Iterator[None]:
    yield
    env.fake.assert_no_unknown_requests()
    env.fake.assert_no_violations()


async def _story(
    env: Env,
    sub: str,
    options: dict[str, object] | None = None,
    *,
    user: FakeUser | None = None,
    channel: FakeChannel | None = None,
) -> FakeMessage:
    handle = await env.fake.send_slash_command(
        "story",
        options or {},
        subcommand=sub,
        user=user or env.world.admin,
        channel=channel or env.world.channel,
    )
    reply = await handle.wait_reply(20.0)
    assert not reply.pings_anyone()
    return reply


async def _train(
    env: Env, channel: FakeChannel, filename: str, data: bytes, **options: object
) -> tuple[InteractionHandle, FakeMessage]:
    attachment = env.fake.add_attachment(filename, data, channel=channel)
    handle = await env.fake.send_slash_command(
        "train", {"story": attachment, **options}, user=env.world.admin, channel=channel
    )
    return handle, await handle.wait_reply(30.0)


async def _finished(
    env: Env, channel: FakeChannel, version: int, state: str = "Finished"
) -> FakeMessage:
    return await env.fake.wait_until(
        lambda: next(
            (
                m
                for m in env.fake.messages(channel)
                if m.kind == "channel"
                and m.content.startswith(f"**{state}**")
                and f"model v{version}" in m.content
            ),
            None,
        ),
        TRAIN_TIMEOUT,
        f"the finished message of model v{version}",
    )


async def _continue(env: Env, prompt: str, channel: FakeChannel, **options: object) -> FakeMessage:
    handle = await env.fake.send_slash_command(
        "continue", {"prompt": prompt, **options}, user=env.world.member, channel=channel
    )
    return await handle.wait_reply(20.0)


def _story_ids(text: str) -> list[int]:
    return [int(i) for i in re.findall(r"`#(\d+)`", text)]


# -- tests, in order ---------------------------------------------------------------------------


async def test_story_is_a_group_and_train_has_mode(env: Env) -> None:
    commands = env.fake.commands[env.world.guild.id]
    subcommands = {o["name"] for o in commands["story"].data["options"]}
    assert subcommands == {"show", "list", "stats", "remove", "versions", "rollback", "export"}
    mode = next(o for o in commands["train"].data["options"] if o["name"] == "mode")
    assert {c["value"] for c in mode["choices"]} == {"replace", "append"}
    empty = await _story(env, "list", user=env.world.member)
    assert "no stories" in empty.text()


async def test_append_then_list(env: Env) -> None:
    channel = env.world.channel
    _, reply = await _train(env, channel, "belling-the-cat.txt", ARTICLE, seed=1)
    assert "Training job #" in reply.content
    await _finished(env, channel, 1)
    _, reply = await _train(env, channel, "chapter.txt", CHAPTER, seed=1, mode="append")
    await _finished(env, channel, 2)
    reply = await _continue(env, "zebra quietly", channel, length=3)
    assert "Zebra quietly painted purple umbrellas" in reply.content, reply.content
    listing = await _story(env, "list", user=env.world.member)
    text = listing.text()
    assert "belling-the-cat.txt" in text and "chapter.txt" in text and "Alice" in text
    ids = _story_ids(text)
    assert len(ids) == 2
    env.shared["ids"] = ids


async def test_remove_needs_the_uploader_or_an_admin_then_retrains(env: Env) -> None:
    channel = env.world.channel
    ids = env.shared["ids"]
    assert isinstance(ids, list)
    article_id, chapter_id = ids
    denied = await _story(env, "remove", {"id": chapter_id}, user=env.world.member)
    assert denied.ephemeral and "uploaded this story" in denied.text()
    missing = await _story(env, "remove", {"id": 999})
    assert missing.ephemeral and "no story #999" in missing.text()
    removed = await _story(env, "remove", {"id": chapter_id})
    assert removed.ephemeral
    assert f"Removed story #{chapter_id}" in removed.text() and "v2" in removed.text()
    assert "Retraining on the remaining stories" in removed.text()
    card = await _story(env, "show", user=env.world.member)
    assert "retraining after story" in card.text() and "removed" in card.text()

    async def retrained() -> bool:
        versions = await _story(env, "versions", user=env.world.member)
        return "**active** `v3`" in versions.text()

    for _ in range(int(TRAIN_TIMEOUT)):
        if await retrained():
            break
        await asyncio.sleep(1.0)
    else:
        raise AssertionError("the retraining after the removal did not finish")
    gone = await _continue(env, "zebra quietly", channel, length=8)
    assert "-# I didn't know 'zebra' or 'quietly'." in gone.content, gone.content  # unknown now
    assert not {"painted", "purple", "walrus"} & set(gone.content.split("\n")[0].split())
    listing = await _story(env, "list")
    assert _story_ids(listing.text()) == [article_id] and "chapter.txt" not in listing.text()
    reply = await _continue(env, "had a general", channel, length=30, temperature=0.0)
    assert reply.content.startswith("Had a general council to consider")
    assert "walrus" not in reply.content and "model v3" in reply.content


async def test_versions_and_rollback(env: Env) -> None:
    channel = env.world.channel
    versions = await _story(env, "versions", user=env.world.member)
    assert "`v3`" in versions.text() and "`v1`" in versions.text() and "`v2`" not in versions.text()
    denied = await _story(env, "rollback", {"version": 1}, user=env.world.member)
    assert denied.ephemeral and "permission" in denied.text()
    # A continuation in flight while the rollback commits: each answer is one model's, whole.
    serving = await env.fake.send_slash_command(
        "continue",
        {"prompt": "had a general", "length": 40, "temperature": 0.0},
        user=env.world.member,
        channel=channel,
    )
    rolled = await _story(env, "rollback", {"version": 1})
    assert "v1 is active" in rolled.text()
    reply = await serving.wait_reply(20.0)
    assert re.search(r"model v[13]\b", reply.content)
    assert reply.content.startswith("Had a general council to consider")
    after = await _continue(env, "had a general", channel, length=5)
    assert "model v1" in after.content
    missing = await _story(env, "rollback", {"version": 2})
    assert missing.ephemeral and "not kept" in missing.text()
    await _story(env, "rollback", {"version": 3})
    assert "model v3" in (await _continue(env, "had a general", channel, length=5)).content


async def test_export_then_import_into_another_channel(env: Env) -> None:
    denied = await _story(env, "export", user=env.world.member)
    assert denied.ephemeral and "permission" in denied.text()
    exported = await _story(env, "export")
    assert exported.ephemeral and "/train" in exported.text()
    [attachment] = exported.attachments
    assert attachment.filename == "story-v3.fabulist.zip"
    data = exported.file(attachment.filename).data
    env.shared["export"] = data

    other = env.world.other_channel
    _, reply = await _train(env, other, attachment.filename, data)
    assert reply.ephemeral and "imported 1 story and the trained model" in reply.content
    done = await _finished(env, other, 1, "Imported")
    assert "no training ran here" in done.content and "204 symbols" in done.content
    here = await _continue(env, "had a general", env.world.channel, length=40, temperature=0.0)
    there = await _continue(env, "had a general", other, length=40, temperature=0.0)
    strip = re.compile(r"-# model v\d+")
    assert strip.sub("", there.content) == strip.sub("", here.content)
    assert "100% from the story" in there.content
    listing = await _story(env, "list", channel=other)
    assert "belling-the-cat.txt" in listing.text() and "Alice" in listing.text()


async def test_story_stats_counts_symbols_versions_trainings_and_replies(env: Env) -> None:
    channel = env.fake.add_channel(env.world.guild, "stats")
    empty = await _story(env, "stats", user=env.world.member, channel=channel)
    [embed] = empty.embeds
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Stories"] == "none" and fields["Replies served"] == "0"
    await _train(env, channel, "belling-the-cat.txt", ARTICLE, seed=1)
    await _finished(env, channel, 1)
    for _ in range(2):
        await _continue(env, "had a general", channel, length=3)
    refused = await _continue(env, "had a general", channel, length=0)
    assert refused.ephemeral  # refused: no reply served
    stats = await _story(env, "stats", user=env.world.member, channel=channel)
    assert not stats.ephemeral and not stats.pings_anyone()
    [embed] = stats.embeds
    assert embed["title"] == "Story stats · #stats"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Stories"].startswith("1 (204 symbols: #") and fields["Stories"].endswith("204)")
    assert fields["Vocabulary"] == "112 words"
    assert fields["Model versions"] == "v1 (active)"
    assert fields["Trainings run"] == "1" and fields["Replies served"] == "2"


async def test_tampered_export_is_refused_and_nothing_changes(env: Env) -> None:
    data = env.shared["export"]
    assert isinstance(data, bytes)
    at = data.index(b"FABULIST") + 300
    tampered = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    third = env.fake.add_channel(env.world.guild, "third")
    _, reply = await _train(env, third, "story-v3.fabulist.zip", tampered)
    assert reply.ephemeral and "not a valid fabulist export" in reply.content
    assert "Nothing was imported" in reply.content
    listing = await _story(env, "list", channel=third)
    assert "no stories" in listing.text()
    card = await _story(env, "show", channel=third)
    assert "No story learned" in card.text()


async def test_long_lists_are_sent_in_pages_with_every_id(env: Env) -> None:
    # Thirty stories would take thirty trainings: the rows go straight into the bot's database
    # (the listing only reads them), with names that markdown escaping doubles in length.
    many = env.fake.add_channel(env.world.guild, "many")
    db = env.bot.db_path
    assert db is not None
    now = datetime.now(UTC).isoformat()
    with contextlib.closing(sqlite3.connect(db, timeout=30.0)) as conn, conn:
        conn.execute(
            "INSERT INTO channels (channel_id, guild_id, name, created_at) VALUES (?, ?, ?, ?)",
            (many.id, env.world.guild.id, "many", now),
        )
        for i in range(30):
            conn.execute(
                "INSERT INTO stories (channel_id, filename, uploader_id, uploader_name, text, "
                "sha256, encoding, bytes, symbols, vocabulary_size, created_at) "
                "VALUES (?, ?, ?, ?, 'the cat .', ?, 'utf-8', 9, 3, 3, ?)",
                (many.id, f"{'_' * 90}{i}.txt", env.world.admin.id, "Alice", f"{i:064x}", now),
            )
        ids = [
            r[0] for r in conn.execute("SELECT id FROM stories WHERE channel_id = ?", (many.id,))
        ]
    handle = await env.fake.send_slash_command(
        "story", {}, subcommand="list", user=env.world.member, channel=many
    )

    def listed() -> list[int] | None:
        texts = [m.content for m in handle.messages()]
        found = [i for text in texts for i in _story_ids(text)]
        return found if len(found) >= len(ids) else None

    found = await env.fake.wait_until(listed, 20.0, "every story id across the pages")
    pages = handle.messages()
    assert found == ids, found
    assert len(pages) >= 3 and all(len(p.content) <= 2000 for p in pages)
    assert all(not p.ephemeral and not p.pings_anyone() for p in pages)
