"""Cancels that arrive before the worker has the task, offline commands beside a live bot,
the /continue cooldown, truthful "previous model" messages and pruned replace-mode stories."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import Config
from bot.core.api import ContinueOptions, TrainOptions
from bot.core.executor import TrainingTask
from bot.core.service import StoryService
from bot.errors import CoolingDown, NoModel
from bot.executors.local import TrainingPool
from bot.store.sqlite import SqliteStoryStore as StoryStore
from tests.service.conftest import ADMIN, STORY, channel, long_story, tiny_config

pytestmark = pytest.mark.slow


async def test_cancel_before_the_worker_has_the_task_is_not_lost(
    service: StoryService, store: StoryStore
) -> None:
    # Channel 2 has a model; channel 1 has none.
    first = await service.train(channel(2), ADMIN, "belling.txt", STORY, TrainOptions(seed=1))
    assert (await service.wait_for_job(first.job_id)).model_version == 1
    for target in (channel(1), channel(2)):
        job = await service.train(target, ADMIN, "b.txt", STORY, TrainOptions(seed=2))
        assert job.state == "running"  # dispatched, but the worker has nothing yet
        progress = await service.cancel(target, ADMIN)
        assert progress is not None
        result = await service.wait_for_job(job.job_id)
        assert result.state == "cancelled" and result.model_version is None, result
        assert result.error is not None
        has_model = target.channel_id == 2
        assert ("previous model is still active" in result.error) == has_model, result.error
    assert await store.active_model(1) is None
    active = await store.active_model(2)
    assert active is not None and active.version == 1
    assert [m.version for m in await store.list_models(2)] == [1]
    # /forget right after /train: nothing is stored afterwards either.
    job = await service.train(channel(3), ADMIN, "b.txt", STORY, TrainOptions(seed=2))
    await service.forget(channel(3), ADMIN)
    assert (await service.wait_for_job(job.job_id)).state == "cancelled"
    assert await store.list_models(3) == [] and await store.list_stories(3) == []
    # The worker is free for the next job.
    again = await service.train(channel(1), ADMIN, "b.txt", STORY, TrainOptions(seed=2))
    assert (await service.wait_for_job(again.job_id)).state == "done"


async def test_pool_run_of_a_job_cancelled_before_it_started(pool: TrainingPool) -> None:
    task = TrainingTask(
        job_id=424242,
        texts=(STORY.decode(),),
        model={"units": 16, "embedding_dim": 16},
        training={"max_epochs": 300, "max_seconds": 60.0},
    )
    run = pool.submit(task)
    run.cancel()  # before any worker has it: it never trains
    outcome = await run.outcome()
    assert outcome.state == "cancelled" and outcome.blob is None


async def test_offline_command_leaves_the_live_bots_job_alone(
    service: StoryService, store: StoryStore, config: Config, tmp_path: Path
) -> None:
    job = await service.train(
        channel(1), ADMIN, "long.txt", long_story(), TrainOptions(max_seconds=30)
    )
    toml = tmp_path / "config.toml"
    toml.write_text(f'[storage]\ndatabase = "{config.storage.database}"\n')
    out = io.StringIO()
    code = await asyncio.to_thread(
        main, ["--config", str(toml), "status", "--channel-id", "1", "--guild-id", "100"], out
    )
    assert code == 0, out.getvalue()
    record = await store.job(job.job_id)
    assert record is not None and record.state in ("queued", "running"), record
    await service.cancel(channel(1), ADMIN)
    assert (await service.wait_for_job(job.job_id)).state == "cancelled"


async def test_cooldown_is_charged_only_for_a_continuation_that_succeeds(
    store: StoryStore, pool: TrainingPool, tmp_path: Path
) -> None:
    svc = StoryService(
        tiny_config(tmp_path, cooldowns={"continue_seconds": 30.0}), store, executor=pool
    )
    await svc.start(warm_workers=False)
    job = await svc.train(channel(1), ADMIN, "belling.txt", STORY, TrainOptions(seed=1))
    assert (await svc.wait_for_job(job.job_id)).state == "done"
    with pytest.raises(NoModel):  # refused after the charge: channel 2 has no model
        await svc.continue_story(channel(2), "had a general", ContinueOptions(), member=ADMIN)
    reply = await svc.continue_story(
        channel(1), "had a general", ContinueOptions(length=2, temperature=0.0), member=ADMIN
    )
    assert reply.symbols == ["council", "to"]
    with pytest.raises(CoolingDown):
        await svc.continue_story(channel(1), "had a general", ContinueOptions(), member=ADMIN)
    await svc.close()


async def test_replace_uploads_never_fill_the_story_limit(
    store: StoryStore, pool: TrainingPool, tmp_path: Path
) -> None:
    config = tiny_config(
        tmp_path, limits={"stories_per_channel": 3}, storage={"model_versions_kept": 2}
    )
    svc = StoryService(config, store, executor=pool)
    await svc.start(warm_workers=False)
    for seed in range(5):
        job = await svc.train(channel(1), ADMIN, "b.txt", STORY, TrainOptions(seed=seed))
        assert (await svc.wait_for_job(job.job_id)).state == "done"
    versions = await svc.figures.versions(channel(1))
    assert [v.version for v in versions] == [5, 4]
    stories = await svc.figures.stories(channel(1))
    assert sorted(s.story_id for s in stories) == sorted(i for v in versions for i in v.story_ids)
    await svc.close()
