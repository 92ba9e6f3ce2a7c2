"""Service fixtures: real SQLite files in tmp_path, one real spawned worker pool per module."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, load_config
from bot.core.api import ChannelRef, Member
from bot.core.service import StoryService
from bot.executors.local import TrainingPool
from bot.store.sqlite import SqliteStoryStore as StoryStore

REPO = Path(__file__).resolve().parents[2]
STORY = (REPO / "data" / "belling-the-cat.txt").read_bytes()
ADMIN = Member(user_id=1, display_name="admin", is_admin=True)
MEMBER = Member(user_id=2, display_name="member", is_admin=False)


def channel(channel_id: int, guild_id: int | None = 100) -> ChannelRef:
    return ChannelRef(guild_id=guild_id, channel_id=channel_id)


def long_story(words: int = 30_000, seed: int = 0) -> bytes:
    """Shuffled words of the article's story: never fully learnable, so training runs on."""
    vocabulary = STORY.decode().split()
    rng = random.Random(seed)
    return " ".join(rng.choice(vocabulary) for _ in range(words)).encode()


def tiny_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "storage": {"database": str(tmp_path / "fabulist.sqlite3")},
        "training": {"units": 16, "embedding_dim": 16, "max_seconds": 60.0, "max_epochs": 300},
        "cooldowns": {"continue_seconds": 0.0},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return load_config(data=data, environ={})


@pytest.fixture(scope="module")
def pool() -> Iterator[TrainingPool]:
    training_pool = TrainingPool(1)
    training_pool.start_sync()
    yield training_pool
    training_pool.close_sync()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return tiny_config(tmp_path)


@pytest.fixture
async def store(config: Config) -> AsyncIterator[StoryStore]:
    opened = await StoryStore.open(config.storage.database)
    yield opened
    await opened.close()


@pytest.fixture
async def service(
    config: Config, store: StoryStore, pool: TrainingPool
) -> AsyncIterator[StoryService]:
    svc = StoryService(config, store, executor=pool)
    await svc.start(warm_workers=False)
    yield svc
    await svc.close()
