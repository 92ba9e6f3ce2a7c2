"""The training scheduler against a fake executor: queue order, cancel races, a dying executor.

``ScriptedExecutor`` is a test double of the ``TrainingExecutor`` interface (bot/core/executor.py)
whose runs end when the test says so, with a real (random-weight) model for "done". The store is
the real SQLite one. The real spawned-process pool keeps its own tests (test_training.py,
tests/reliability/test_faults.py); these run in milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import open_app
from bot.core.api import JobProgress, TrainOptions
from bot.core.executor import CANCELLED, ProgressCallback, TrainingOutcome, TrainingTask
from bot.core.service import StoryService
from bot.errors import QueueFull
from model import tokenize
from model.vocabulary import Vocabulary
from tests.service.conftest import ADMIN, MEMBER, STORY, channel, tiny_config
from tests.support import synthetic_model


class ScriptedRun:
    def __init__(self, task: TrainingTask, on_progress: ProgressCallback | None) -> None:
        self.task = task
        self.on_progress = on_progress
        self.cancelled = False
        self.ended: asyncio.Future[TrainingOutcome] = asyncio.get_running_loop().create_future()

    @property
    def job_id(self) -> int:
        return self.task.job_id

    def cancel(self) -> None:
        self.cancelled = True

    async def outcome(self) -> TrainingOutcome:
        return await self.ended

    def finish(self, state: str = "done") -> None:
        if state == "done":
            tokens = [t for text in self.task.texts for t in tokenize(text)]
            model = synthetic_model(list(Vocabulary.build(tokens).symbols))
            from model import to_bytes

            outcome = TrainingOutcome(
                self.job_id,
                "done",
                blob=to_bytes(model),
                config=model.config.to_dict(),
                vocabulary=list(model.vocabulary.symbols),
                figures=model.figures.to_dict(),
            )
        elif state == "cancelled":
            outcome = TrainingOutcome(self.job_id, "cancelled", error=CANCELLED)
        else:
            outcome = TrainingOutcome(self.job_id, "failed", error="It broke.")
        self.ended.set_result(outcome)

    def die(self) -> None:
        self.ended.set_exception(RuntimeError("no training worker is available"))


class ScriptedExecutor:
    def __init__(self, capacity: int = 1) -> None:
        self._capacity = capacity
        self.runs: list[ScriptedRun] = []
        self.submitted = asyncio.Event()
        self.closed = False

    @property
    def capacity(self) -> int:
        return self._capacity

    def prepare(self) -> None:
        return None

    async def start(self) -> None:
        return None

    def submit(
        self, task: TrainingTask, on_progress: ProgressCallback | None = None
    ) -> ScriptedRun:
        run = ScriptedRun(task, on_progress)
        self.runs.append(run)
        self.submitted.set()
        return run

    async def close(self) -> None:
        self.closed = True

    async def next_run(self, count: int) -> ScriptedRun:
        """Wait until ``count`` runs were submitted; the last one."""
        async with asyncio.timeout(5):
            while len(self.runs) < count:
                self.submitted.clear()
                await self.submitted.wait()
        return self.runs[count - 1]


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[tuple[StoryService, ScriptedExecutor]]:
    executor = ScriptedExecutor(capacity=1)
    config = tiny_config(tmp_path, workers={"queue_length": 2})
    async with open_app(config, executor=executor, warm_workers=False) as app:
        yield app.service, executor
    assert not executor.closed  # brought by the caller: open_app leaves it open


async def _train(service: StoryService, channel_id: int) -> int:
    job = await service.train(channel(channel_id), ADMIN, "s.txt", STORY, TrainOptions(seed=1))
    return job.job_id


async def test_jobs_run_in_order_one_at_a_time(
    fake: tuple[StoryService, ScriptedExecutor],
) -> None:
    service, executor = fake
    positions: list[int | None] = []
    first = await _train(service, 1)
    second = await service.train(
        channel(2), ADMIN, "s.txt", STORY, TrainOptions(), on_progress=lambda p: None
    )
    third = await service.train(
        channel(3),
        ADMIN,
        "s.txt",
        STORY,
        TrainOptions(),
        on_progress=lambda p: positions.append(p.queue_position),
    )
    assert (second.queue_position, third.queue_position) == (1, 2)
    with pytest.raises(QueueFull):
        await _train(service, 4)
    for count, job_id in enumerate((first, second.job_id, third.job_id), start=1):
        run = await executor.next_run(count)
        assert run.job_id == job_id and len(executor.runs) == count  # never two at once
        run.finish()
        assert (await service.wait_for_job(job_id)).model_version == 1
    assert positions[0] == 2 and 1 in positions and positions[-1] is None


async def test_cancel_before_the_hand_over_never_reaches_the_executor(
    fake: tuple[StoryService, ScriptedExecutor],
) -> None:
    service, executor = fake
    job_id = await _train(service, 1)  # dispatched at once: its task still awaits the store
    assert await service.cancel(channel(1), ADMIN) is not None
    result = await service.wait_for_job(job_id)
    assert result.state == "cancelled" and executor.runs == []
    # A queued job cancelled: the running one is untouched, the next one runs.
    running = await _train(service, 1)
    queued = await _train(service, 2)
    run = await executor.next_run(1)
    progress = await service.cancel(channel(2), ADMIN)
    assert progress is not None and (await service.wait_for_job(queued)).state == "cancelled"
    run.finish()
    assert (await service.wait_for_job(running)).state == "done"
    assert len(executor.runs) == 1


async def test_a_cancel_that_loses_the_race_keeps_no_model(
    fake: tuple[StoryService, ScriptedExecutor],
) -> None:
    service, executor = fake
    job_id = await _train(service, 1)
    run = await executor.next_run(1)
    progress = await service.cancel(channel(1), ADMIN)
    assert progress is not None and progress.state == "cancelling" and run.cancelled
    run.finish("done")  # the trainer finished before it saw the cancel
    result = await service.wait_for_job(job_id)
    assert result.state == "cancelled" and result.model_version is None
    assert await service.store.active_model(channel(1).channel_id) is None


async def test_only_the_requester_or_an_admin_cancels(
    fake: tuple[StoryService, ScriptedExecutor],
) -> None:
    from bot.errors import NotAllowed

    service, executor = fake
    await _train(service, 1)
    with pytest.raises(NotAllowed):
        await service.cancel(channel(1), MEMBER)
    (await executor.next_run(1)).finish()


async def test_a_dying_executor_fails_the_job_and_the_queue_goes_on(
    fake: tuple[StoryService, ScriptedExecutor],
) -> None:
    service, executor = fake
    seen: list[JobProgress] = []
    first = await service.train(
        channel(1), ADMIN, "s.txt", STORY, TrainOptions(), on_progress=seen.append
    )
    second = await _train(service, 2)
    (await executor.next_run(1)).die()
    result = await service.wait_for_job(first.job_id)
    assert result.state == "failed" and result.error == "Training failed (internal error)."
    assert seen[-1].state == "failed"
    record = await service.store.job(first.job_id)
    assert record is not None and record.state == "failed"
    (await executor.next_run(2)).finish("failed")
    failed = await service.wait_for_job(second)
    assert failed.state == "failed" and failed.error is not None and "It broke." in failed.error


async def test_forget_while_training_stores_nothing(
    fake: tuple[StoryService, ScriptedExecutor],
) -> None:
    service, executor = fake
    job_id = await _train(service, 1)
    run = await executor.next_run(1)
    await service.forget(channel(1), ADMIN)
    assert run.cancelled
    run.finish("done")
    assert (await service.wait_for_job(job_id)).state == "cancelled"
    assert await service.store.list_models(channel(1).channel_id) == []


async def test_close_interrupts_open_jobs_and_records_it(tmp_path: Path) -> None:
    executor = ScriptedExecutor(capacity=1)
    config = tiny_config(tmp_path)
    async with open_app(config, executor=executor, warm_workers=False) as app:
        running = await _train(app.service, 1)
        queued = await _train(app.service, 2)
        run = await executor.next_run(1)
        await app.service.close()
        assert run.cancelled
        for job_id in (running, queued):
            result = await app.service.wait_for_job(job_id)
            assert result.state == "interrupted", result
            record = await app.store.job(job_id)
            assert record is not None and record.state == "interrupted"
