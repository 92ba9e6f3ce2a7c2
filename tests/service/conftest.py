"""Service fixtures: real SQLite files in tmp_path, one real executor per test process (local,
Ray)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, load_config
from bot.core.api import ChannelRef, Member
from bot.core.executor import TrainingExecutor
from bot.core.service import StoryService
from bot.executors.local import TrainingPool
from bot.store.sqlite import SqliteStoryStore as StoryStore
from tests.ray_cluster import RayHead, ray_head_in_temp_dir
from tests.support import REPO, STORY, long_story, seed_model  # noqa: F401  (re-exported)

ADMIN = Member(user_id=1, display_name="admin", is_admin=True)
MEMBER = Member(user_id=2, display_name="member", is_admin=False)


def channel(channel_id: int, guild_id: int | None = 100) -> ChannelRef:
    return ChannelRef(guild_id=guild_id, channel_id=channel_id)


def tiny_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "storage": {"database": str(tmp_path / "fabulist.sqlite3")},
        "training": {"units": 16, "embedding_dim": 16, "max_seconds": 60.0, "max_epochs": 300},
        "cooldowns": {"continue_seconds": 0.0},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return load_config(data=data, environ={})


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayHead]:
    """One real Ray cluster (``ray start --head``, 2 CPUs) on 127.0.0.1 for every Ray test; the
    executors' driver processes join it."""
    with ray_head_in_temp_dir() as head:
        yield head


@pytest.fixture(scope="session", params=["local", pytest.param("ray", marks=pytest.mark.ray)])
def pool(request: pytest.FixtureRequest) -> Iterator[TrainingExecutor]:
    """One training executor per test process (pytest-xdist worker) and kind: the local
    spawned pool, and Ray (same tests). Its trainer imports TensorFlow once for every module
    that trains on it; a trainer a test kills is replaced by the executor, as in the bot."""
    if request.param == "ray":
        from bot.executors.ray_cluster import RaySettings, RayTrainingExecutor

        head: RayHead = request.getfixturevalue("ray_cluster")
        ray_executor = RayTrainingExecutor(RaySettings(address=head.address, max_concurrent_jobs=1))
        ray_executor.start_sync()
        yield ray_executor
        ray_executor.close_sync()
        return
    training_pool = TrainingPool(1)
    training_pool.start_sync()
    yield training_pool
    training_pool.close_sync()


def _runs_in_flight(executor: TrainingExecutor) -> int:
    """The trainings an executor still holds (read from its internals: for the check below)."""
    if isinstance(executor, TrainingPool):
        return sum(1 for worker in executor._workers if worker.assignment is not None)
    driver = getattr(executor, "_driver", None)
    return len(driver.runs) if driver is not None else 0


@pytest.fixture(autouse=True)
def _executor_left_idle(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the shared executor, its trainings have ended (within 60 s) and
    it still works: every test's database numbers its jobs from 1, so a run left behind could
    take a later test's outcome or cancel, in another module too."""
    yield
    if "pool" not in request.fixturenames:
        return
    executor: TrainingExecutor = request.getfixturevalue("pool")
    deadline = time.monotonic() + 60.0
    while _runs_in_flight(executor):
        assert time.monotonic() < deadline, "the test left a training in the shared executor"
        time.sleep(0.05)
    assert not getattr(executor, "broken", False), "the shared local pool stopped restarting"


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


@contextlib.asynccontextmanager
async def article_service(tmp_path: Path, channels: Sequence[int]) -> AsyncIterator[StoryService]:
    """A service whose ``channels`` each hold a seeded model of the article (numpy weights: no
    training runs)."""
    config = tiny_config(tmp_path)
    opened = await StoryStore.open(config.storage.database)
    for channel_id in channels:
        await seed_model(opened, channel_id, STORY.decode())
    svc = StoryService(config, opened, TrainingPool(1))
    await svc.start(warm_workers=False)
    try:
        yield svc
    finally:
        await svc.close()
        await opened.close()
