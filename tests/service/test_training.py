"""Training through the service with a real spawned worker and real SQLite files."""

from __future__ import annotations

import _thread
import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import Config
from bot.core.api import ContinueOptions, JobProgress, TrainOptions
from bot.core.service import StoryService
from bot.core.store import NewStory
from bot.errors import Busy, NotAllowed, QueueFull
from bot.executors.local import TrainingPool
from bot.store.sqlite import SqliteStoryStore as StoryStore
from tests.service.conftest import ADMIN, MEMBER, REPO, STORY, channel, long_story, tiny_config

pytestmark = pytest.mark.slow


async def _first_epoch(progress: list[JobProgress]) -> None:
    for _ in range(600):
        if any(p.state == "running" and p.epoch >= 1 for p in progress):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no training progress arrived")


async def test_train_continue_second_train_and_isolation(
    service: StoryService, store: StoryStore
) -> None:
    seen: list[JobProgress] = []
    job = await service.train(
        channel(1), ADMIN, "belling.txt", STORY, TrainOptions(seed=1), seen.append
    )
    with pytest.raises(Busy, match=f"job #{job.job_id}"):
        await service.train(channel(1), ADMIN, "again.txt", STORY, TrainOptions())
    result = await service.wait_for_job(job.job_id)
    assert result.state == "done", result.error
    assert result.model_version == 1 and result.figures is not None
    assert result.figures.learnable_accuracy > 0.9
    assert seen[-1].state == "done" and any(p.epoch > 0 for p in seen)

    reply = await service.continue_story(
        channel(1), "had a general", ContinueOptions(length=8, temperature=0.0)
    )
    assert reply.symbols[:3] == ["council", "to", "consider"]
    assert reply.text.startswith("had a general council to consider")
    assert reply.original_share == 1.0 and reply.model_version == 1
    assert set(await service.complete_word(channel(1), "cou")) == {"council", "could"}
    # A word the story never uses is left out and named (issue 23), not refused.
    unknown = await service.continue_story(
        channel(1), "had a zebra general", ContinueOptions(length=8, temperature=0.0)
    )
    assert unknown.symbols == reply.symbols and unknown.text.startswith("had a zebra general")
    assert [u.word for u in unknown.unknown_words] == ["zebra"]

    # The other channel (another guild too) knows nothing of channel 1.
    with pytest.raises(Exception, match="No story"):
        await service.continue_story(channel(2, guild_id=200), "had a general", ContinueOptions())

    card = await service.story_card(channel(1))
    assert card.has_model and card.model_version == 1 and card.story_filename == "belling.txt"
    assert card.symbols == 204 and card.vocabulary_size == 112
    png = await service.training_plot(channel(1))
    assert png is not None and png.startswith(b"\x89PNG")

    # Second training in the same channel: a different story, version 2 answers.
    other = b"the dog barked at the moon and the moon said nothing to the dog ."
    second = await service.train(channel(1), ADMIN, "dog.txt", other, TrainOptions(seed=2))
    assert (await service.wait_for_job(second.job_id)).model_version == 2
    reply = await service.continue_story(
        channel(1), "dog barked at", ContinueOptions(length=2, temperature=0.0)
    )
    assert reply.model_version == 2 and reply.symbols == ["the", "moon"]
    versions = await service.figures.versions(channel(1))
    assert [(v.version, v.active) for v in versions] == [(2, True), (1, False)]
    await service.rollback(channel(1), ADMIN)
    reply = await service.continue_story(
        channel(1), "had a general", ContinueOptions(length=1, temperature=0.0)
    )
    assert reply.model_version == 1 and reply.symbols == ["council"]
    with pytest.raises(NotAllowed):
        await service.rollback(channel(1), MEMBER, 2)

    await service.forget(channel(1), ADMIN)
    assert await store.list_stories(1) == [] and await store.list_models(1) == []
    assert await store.integrity_check() == "ok"


async def test_cancel_and_queue(service: StoryService, store: StoryStore, tmp_path: Path) -> None:
    seen: list[JobProgress] = []
    running = await service.train(
        channel(1), ADMIN, "long.txt", long_story(), TrainOptions(max_seconds=30), seen.append
    )
    queued = await service.train(channel(2), ADMIN, "b.txt", STORY, TrainOptions())
    assert queued.state == "queued" and queued.queue_position == 1
    await _first_epoch(seen)
    with pytest.raises(NotAllowed):
        await service.cancel(channel(1), MEMBER)
    progress = await service.cancel(channel(1), ADMIN)
    assert progress is not None and progress.state == "cancelling"
    result = await service.wait_for_job(running.job_id)
    assert result.state == "cancelled" and result.error
    assert (await store.job(running.job_id)).state == "cancelled"  # type: ignore[union-attr]
    assert await store.active_model(1) is None
    # The queued job then runs on the freed worker.
    assert (await service.wait_for_job(queued.job_id)).state == "done"
    assert await service.cancel(channel(2), ADMIN) is None


async def test_queue_full(store: StoryStore, pool: TrainingPool, tmp_path: Path) -> None:
    svc = StoryService(tiny_config(tmp_path, workers={"queue_length": 1}), store, executor=pool)
    await svc.start(warm_workers=False)
    seen: list[JobProgress] = []
    first = await svc.train(
        channel(1), ADMIN, "long.txt", long_story(), TrainOptions(max_seconds=30), seen.append
    )
    await svc.train(channel(2), ADMIN, "b.txt", STORY, TrainOptions())
    with pytest.raises(QueueFull):
        await svc.train(channel(3), ADMIN, "c.txt", STORY, TrainOptions())
    assert await store.list_stories(3) == []
    await svc.cancel(channel(1), ADMIN)
    assert (await svc.wait_for_job(first.job_id)).state == "cancelled"
    await svc.close()


async def test_worker_sigkill_keeps_previous_model(
    service: StoryService, store: StoryStore, pool: TrainingPool, config: Config
) -> None:
    first = await service.train(channel(1), ADMIN, "belling.txt", STORY, TrainOptions(seed=1))
    assert (await service.wait_for_job(first.job_id)).state == "done"
    seen: list[JobProgress] = []
    job = await service.train(
        channel(1), ADMIN, "long.txt", long_story(), TrainOptions(max_seconds=30), seen.append
    )
    await _first_epoch(seen)
    pid = pool.pid_for_job(job.job_id)
    assert pid is not None
    # A trainer imports TensorFlow and Keras without matplotlib (import_training_code).
    assert "/matplotlib/" not in await asyncio.to_thread(Path(f"/proc/{pid}/maps").read_text)
    os.kill(pid, signal.SIGKILL)
    result = await service.wait_for_job(job.job_id)
    assert result.state == "failed"
    died = "SIGKILL" if isinstance(pool, TrainingPool) else "its Ray worker died"
    assert result.error is not None and died in result.error
    assert "previous model is still active" in result.error
    record = await store.job(job.job_id)
    assert record is not None and record.state == "failed" and record.error == result.error
    # The previous model still answers; the database is intact.
    reply = await service.continue_story(
        channel(1), "had a general", ContinueOptions(length=3, temperature=0.0)
    )
    assert reply.model_version == 1 and reply.symbols == ["council", "to", "consider"]
    assert await store.integrity_check() == "ok"
    raw = sqlite3.connect(config.storage.database)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    # A replacement worker serves the next job.
    again = await service.train(channel(2), ADMIN, "belling.txt", STORY, TrainOptions(seed=1))
    assert (await service.wait_for_job(again.job_id)).state == "done"
    if isinstance(pool, TrainingPool):  # Ray starts its own replacement worker
        assert pool.restarts >= 1


async def test_restart_marks_open_jobs_interrupted(config: Config, pool: TrainingPool) -> None:
    # A previous process stored a story and was running its job when it died.
    store = await StoryStore.open(config.storage.database)
    job = await store.add_story_and_job(
        channel_id=1,
        guild_id=5,
        channel_name=None,
        story=NewStory("s.txt", 1, "u", STORY.decode(), "0" * 64, "utf-8", len(STORY), 204, 112),
        append=False,
        requested_by=1,
        requested_by_name="u",
        options={},
    )
    await store.start_job(job.id)
    await store.close()

    store = await StoryStore.open(config.storage.database)
    service = StoryService(config, store, executor=pool)
    await service.start(warm_workers=False)
    result = await service.wait_for_job(job.id)
    assert result.state == "interrupted" and result.error and "restarted" in result.error
    card = await service.story_card(channel(1, guild_id=5))
    assert card.job is None and card.last_job is not None
    assert card.last_job.state == "interrupted"
    # The channel can train again at once.
    again = await service.train(channel(1, 5), ADMIN, "s.txt", STORY, TrainOptions(seed=1))
    assert (await service.wait_for_job(again.job_id)).state == "done"
    await service.close()
    await store.close()


def test_bot_process_never_imports_tensorflow() -> None:
    code = (
        "import sys, bot.app, bot.core.service, bot.store.sqlite, bot.executors.local\n"
        "import bot.executors.ray_cluster, bot.executors.ray_cluster.trainer\n"
        "import bot.cli, bot.console, bot.plot\n"
        "roots = ('tensorflow', 'keras', 'discord', 'ray')\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in roots]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)
    # The Discord adapter and the export format: discord may load there, TensorFlow never.
    adapter = sorted(
        "bot.discord_adapter."
        + ".".join(path.relative_to(REPO / "bot" / "discord_adapter").parts).removesuffix(".py")
        for path in (REPO / "bot" / "discord_adapter").rglob("*.py")
        if path.name != "__init__.py"
    )
    assert "bot.discord_adapter.cogs.training" in adapter
    code = (
        f"import importlib, sys\nfor name in {[*adapter, 'bot.export']!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "assert not heavy, heavy\n"
        "assert 'bot.discord_adapter.cogs.story' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


async def test_trainers_start_with_the_bot_unless_workers_warm_is_false(tmp_path: Path) -> None:
    """``workers.warm`` (true by default) starts the trainer processes with the bot; false
    starts none until the first training, which then starts one and trains."""
    from bot.app import open_app
    from bot.executors.local import LocalProcessExecutor

    async with open_app(tiny_config(tmp_path / "warm")) as app:
        assert isinstance(app.executor, LocalProcessExecutor) and app.executor.started
    async with open_app(tiny_config(tmp_path / "cold", workers={"warm": False})) as app:
        assert isinstance(app.executor, LocalProcessExecutor)
        assert not app.executor.started and app.executor.ready_workers == 0
        job = await app.service.train(channel(1), ADMIN, "s.txt", STORY, TrainOptions(seed=1))
        assert (await app.service.wait_for_job(job.job_id)).state == "done"
        assert app.executor.started


def test_an_interrupt_during_a_ray_trainers_import_is_raised_after_it() -> None:
    """ray.cancel interrupts a Ray worker's main thread; one that lands while the training code
    is imported waits until the import is whole (an import cut short leaves native modules that
    cannot load again, and the worker could train no more), then cancels as before."""
    from bot.executors.ray_cluster.trainer import interrupts_deferred

    before = signal.getsignal(signal.SIGINT)
    steps = 0
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        _thread.interrupt_main()  # how Ray's cancel reaches a task
        for _ in range(100_000):  # bytecode boundaries, where an interrupt would land
            steps += 1
    assert steps == 100_000
    assert signal.getsignal(signal.SIGINT) is before
