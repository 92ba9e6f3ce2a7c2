"""Event-loop lag while a training job runs through the service, versus the same job on the loop.

A probe coroutine sleeps 10 ms in a loop; lag = how late it wakes. Prints max and p99 lag for:
  service  the job runs in a spawned worker via StoryService (progress flows back to the loop)
  on-loop  the same train_model call made directly on the event loop (baseline)
Target: service max <= 20 ms. Run: .venv/bin/python bench/bench_service_loop_lag.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._measure import Probe  # noqa: E402
from bot.app import open_app  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.core.api import ChannelRef, Member, TrainOptions  # noqa: E402
from bot.store.sqlite import SqliteStoryStore as StoryStore  # noqa: E402

STORY = (REPO / "data" / "belling-the-cat.txt").read_bytes()
ADMIN = Member(1, "bench", True)


async def through_service(db: Path) -> tuple[float, float, int, float]:
    config = load_config(data={"storage": {"database": str(db)}}, environ={})
    store = await StoryStore.open(db)
    async with open_app(config, store=store) as app:
        service = app.service
        # Warm the worker (TensorFlow import, first tracing) so the figure is the steady state.
        warm = await service.train(
            ChannelRef(None, 1), ADMIN, "warm.txt", STORY, TrainOptions(seed=0)
        )
        await service.wait_for_job(warm.job_id)
        probe = Probe()
        task = asyncio.create_task(probe.run())
        start = time.perf_counter()
        job = await service.train(
            ChannelRef(None, 2), ADMIN, "story.txt", STORY, TrainOptions(seed=1)
        )
        result = await service.wait_for_job(job.job_id)
        seconds = time.perf_counter() - start
        probe.running = False
        await task
        assert result.state == "done", result.error
    await store.close()
    return (*probe.figures(), seconds)


async def on_loop() -> tuple[float, float, int, float]:
    from model import TrainingConfig, tokenize
    from model.training import train_model

    tokens = tokenize(STORY.decode())
    train_model(tokens, {}, TrainingConfig(seed=0))  # warm-up, as in the service case
    probe = Probe()
    task = asyncio.create_task(probe.run())
    await asyncio.sleep(0.05)
    start = time.perf_counter()
    train_model(tokens, {}, TrainingConfig(seed=1))
    seconds = time.perf_counter() - start
    await asyncio.sleep(0.05)
    probe.running = False
    await task
    return (*probe.figures(), seconds)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        service = asyncio.run(through_service(Path(folder) / "bench.sqlite3"))
    baseline = asyncio.run(on_loop())
    print("event-loop lag while training the article's story (512 units), probe sleeping 10 ms")
    print(f"{'mode':<10}{'max ms':>10}{'p99 ms':>10}{'samples':>10}{'job s':>10}")
    for name, (worst, p99, samples, seconds) in (("service", service), ("on-loop", baseline)):
        print(f"{name:<10}{worst:>10.1f}{p99:>10.1f}{samples:>10}{seconds:>10.2f}")
    print(f"max lag ratio on-loop/service: {baseline[0] / max(service[0], 0.001):.0f}x")
    print(f"target service max <= 20 ms: {'met' if service[0] <= 20 else 'MISSED'}")


if __name__ == "__main__":
    main()
