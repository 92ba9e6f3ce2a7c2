"""SQLite -> PostgreSQL end to end (issue 13): the same replies, byte for byte, after migrating.

The real bot process trains two channels through the fake Discord on the SQLite default and
answers a set of /continue requests (seeded, so a reply is a function of the model); the bot is
stopped, ``python -m bot migrate-storage`` copies its database into a real PostgreSQL (started by
tests/conftest.py), and the bot started on PostgreSQL gives every reply again, byte for byte.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fake_discord import FakeDiscord
from tests.fake_discord.fixtures import StartBot
from tests.fake_discord.models import FakeChannel, FakeUser
from tests.service.conftest import STORY, long_story
from tests.support import REPO

pytestmark = pytest.mark.e2e

TINY = {"units": 32, "embedding_dim": 16, "max_epochs": 200, "max_seconds": 60.0}
REQUESTS: list[dict[str, Any]] = [
    {"prompt": "had a general", "seed": 3},
    {"prompt": "mouse mouse mouse", "seed": 1},
    {"prompt": "the cat", "seed": 7, "length": 60},
    {"prompt": "a young mouse got up", "seed": 11, "length": 8},
]


async def _train(fake: FakeDiscord, user: FakeUser, channel: FakeChannel, data: bytes) -> None:
    attachment = fake.add_attachment("story.txt", data, channel=channel)
    handle = await fake.send_slash_command(
        "train", {"story": attachment}, user=user, channel=channel
    )
    reply = await handle.wait_reply(60.0)
    assert "Training job #" in reply.content, reply.content
    progress = await fake.wait_for_message(
        lambda m: (
            m.kind == "channel" and any(c.startswith("fabulist:cancel:") for c in m.custom_ids())
        ),
        channel=channel,
        timeout=30.0,
    )
    await fake.wait_until(
        lambda: progress if progress.content.startswith("**Finished**") else None,
        180.0,
        "training finished",
    )


async def _replies(fake: FakeDiscord, user: FakeUser, channels: list[FakeChannel]) -> list[str]:
    replies = []
    for channel in channels:
        for options in REQUESTS:
            handle = await fake.send_slash_command("continue", options, user=user, channel=channel)
            reply = await handle.wait_reply(60.0)
            assert not reply.ephemeral, reply.content
            replies.append(reply.content)
    return replies


def _remove_database(path: Path) -> None:
    for leftover in path.parent.glob(f"{path.name}*"):  # with its -wal and -shm
        leftover.unlink()


async def test_replies_are_byte_identical_after_migrating_to_postgresql(
    postgres_url: str, fake_discord: FakeDiscord, start_bot: StartBot, tmp_path: Path
) -> None:
    # (postgres_url first: its database outlives the bot processes at teardown)
    fake = fake_discord
    world = fake.world
    assert world is not None
    sqlite_path = tmp_path / "before.sqlite3"
    common: dict[str, Any] = {
        "workers": {"count": 1},
        "training": TINY,
        "cooldowns": {"continue_seconds": 0.0},
    }
    on_sqlite = await start_bot(
        {**common, "storage": {"database": str(sqlite_path)}}, name="sqlite"
    )
    await _train(fake, world.admin, world.channel, STORY)
    await _train(fake, world.admin, world.other_channel, long_story(3_000))
    channels = [world.channel, world.other_channel]
    before = await _replies(fake, world.member, channels)
    assert len(set(before)) == len(before), "the requests should give different replies"
    assert await on_sqlite.stop() == 0

    migrate = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "--config", str(on_sqlite.config_path), "migrate-storage",
        "--from", f"sqlite:///{sqlite_path}", "--to", postgres_url,
        cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await migrate.communicate()
    assert await migrate.wait() == 0, output.decode()

    _remove_database(sqlite_path)  # only PostgreSQL can answer now

    # It only answers: its trainer starts at a first training (none comes).
    serving = {**common, "workers": {"count": 1, "warm": False}}
    await start_bot({**serving, "storage": {"url": postgres_url}}, name="postgres")
    after = await _replies(fake, world.member, channels)
    assert after == before  # byte for byte, every reply
