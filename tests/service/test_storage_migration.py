"""``migrate-storage``: SQLite -> PostgreSQL -> SQLite round trip of a 50-channel database."""

from __future__ import annotations

import asyncio
import io
import random
from pathlib import Path

import pytest

from bot.app import open_app
from bot.cli import main
from bot.config import Config
from bot.core.api import ContinueOptions
from bot.core.library import removal_plan
from bot.core.store import JobState, NewStory
from bot.core.validation import JobOptions
from bot.errors import StorageError
from bot.store.migration import migrate_storage
from bot.store.sqlite import SqliteStoryStore as StoryStore
from bot.store.urls import open_store_url
from tests.service.conftest import STORY, channel, tiny_config
from tests.support import seed_model

CHANNELS = 50


def _channel_text(index: int) -> str:
    words = STORY.decode().split()
    rng = random.Random(index)
    return " ".join(rng.choice(words) for _ in range(60 + index))


async def _seed(path: Path) -> dict[int, str]:
    """50 channels: stories, 1-3 model versions, a rollback, a removed story, job history.

    Returns each channel's prompt (its text's first three words)."""
    store = await StoryStore.open(path)
    prompts = {}
    try:
        for index in range(CHANNELS):
            channel_id = 1000 + index
            text = _channel_text(index)
            prompts[channel_id] = " ".join(text.split()[:3])
            for version in range(1 + index % 3):
                await seed_model(
                    store, channel_id, text, guild_id=100 + index % 4, name=f"c{index}",
                    seed=index * 10 + version,
                )  # fmt: skip
            if index % 3 == 2:
                await store.set_active_version(channel_id, 2)  # an older version answers
            if index % 7 == 0:
                failed = await store.add_story_and_job(
                    channel_id=channel_id, guild_id=None, channel_name=None,
                    story=MORE, append=True, requested_by=1,
                    requested_by_name="u", options={"layers": 1},
                )  # fmt: skip
                await store.finish_job(failed.id, JobState.FAILED, "a failure kept in history")
            if index % 11 == 5:
                stories = await store.list_stories(channel_id)
                await store.delete_story(
                    channel_id, stories[-1].id, guild_id=None,
                    policy=lambda facts: removal_plan(facts, JobOptions({}, {}, {})),
                    requested_by=1, requested_by_name="u",
                )  # fmt: skip
    finally:
        await store.close()
    return prompts


MORE = NewStory("more.txt", 2, "v", "the cat ran .", "1" * 64, "utf-8", 13, 4, 4)


async def _continuations(config: Config, url: str, prompts: dict[int, str]) -> dict[int, str]:
    store = await open_store_url(url)
    out = {}
    try:
        async with open_app(config, store=store, warm_workers=False) as app:
            for channel_id, prompt in prompts.items():
                if await store.active_model_id(channel_id) is None:
                    out[channel_id] = "(no model)"
                    continue
                result = await app.service.continue_story(
                    channel(channel_id), prompt, ContinueOptions(length=24, temperature=0.8, seed=7)
                )
                out[channel_id] = result.text
    finally:
        await store.close()
    return out


async def test_round_trip_of_50_channels_keeps_every_row_and_continuation(
    tmp_path: Path, postgres_url: str
) -> None:
    source = f"sqlite:///{tmp_path / 'a.sqlite3'}"
    prompts = await _seed(tmp_path / "a.sqlite3")
    report = await migrate_storage(source, postgres_url)
    assert report.rows["channels"] == CHANNELS
    assert report.rows["models"] == report.blobs_verified > CHANNELS
    assert report.rows["jobs"] > report.rows["models"]  # the failed jobs' history too
    config = tiny_config(tmp_path)
    before = await _continuations(config, source, prompts)
    after = await _continuations(config, postgres_url, prompts)
    assert after == before  # byte for byte, every channel
    assert sum(text != "(no model)" for text in after.values()) >= CHANNELS - 5
    # and back into a new SQLite file: the same rows again
    back = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    again = await migrate_storage(postgres_url, back)
    assert again.rows == report.rows and again.blobs_verified == report.blobs_verified
    assert await _continuations(config, back, prompts) == before
    # the copy is a working database: new rows get new ids, versions continue
    store = await open_store_url(postgres_url)
    try:
        assert await store.integrity_check() == "ok"
        version = (await seed_model(store, 1001, _channel_text(1), seed=99))[1]
        assert version == 3  # channel 1001 had versions 1 and 2
    finally:
        await store.close()


async def test_non_empty_target_is_refused_unless_replaced(
    tmp_path: Path, postgres_url: str
) -> None:
    path = tmp_path / "a.sqlite3"
    store = await StoryStore.open(path)
    await seed_model(store, 5, "the cat sat on the mat .")
    await store.close()
    source = f"sqlite:///{path}"
    await migrate_storage(source, postgres_url)
    with pytest.raises(StorageError, match="not empty"):
        await migrate_storage(source, postgres_url)
    report = await migrate_storage(source, postgres_url, replace=True)
    assert report.rows["channels"] == 1 and report.rows["models"] == 1


def test_command_line_copies_and_never_prints_the_password(
    tmp_path: Path, postgres_url: str
) -> None:
    path = tmp_path / "a.sqlite3"

    async def seed() -> None:
        store = await StoryStore.open(path)
        await seed_model(store, 5, "the cat sat on the mat .")
        await store.close()

    asyncio.run(seed())
    # trust authentication accepts any password: it must still never be shown
    secret_url = postgres_url.replace("fabulist@", "fabulist:s3cret-pw@")
    out = io.StringIO()
    assert main(["migrate-storage", "--from", f"sqlite:///{path}", "--to", secret_url], out) == 0
    assert "channels 1" in out.getvalue() and "1 model blobs" in out.getvalue()
    assert "s3cret-pw" not in out.getvalue() and "fabulist:***@" in out.getvalue()
    # a second run refuses the non-empty target, exit status 1
    assert main(["migrate-storage", "--from", f"sqlite:///{path}", "--to", secret_url], out) == 1
