"""Load figures for issue 5, through the real service in one process (no Discord).

1. 50 concurrent ``continue_story`` calls over 10 channels while 2 trainings run in spawned
   workers: reply time p50/p99/max and the event loop's lag (a 10 ms sleep probe in the same
   loop), next to the same 50 calls with no training running (the baseline, same run).
2. Resident memory with 1,000 channels that have models, cache bound 32: RSS before and after
   one /continue per channel, next to what all 1,000 models would take.

The end-to-end figure with the real bot process and the fake Discord is printed by
``make reliability`` (tests/reliability/test_discord.py). Run:
    .venv/bin/python bench/bench_load.py
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

from bench._measure import Probe, pct, rss_mb  # noqa: E402
from bot.app import open_app  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.core.api import ChannelRef, ContinueOptions, Member, TrainOptions  # noqa: E402
from bot.core.service import StoryService  # noqa: E402
from bot.store.sqlite import SqliteStoryStore as StoryStore  # noqa: E402
from tests.support import STORY, long_story, seed_model, synthetic_blob, target_line  # noqa: E402

ADMIN = Member(1, "bench", True)
PROMPTS = ["had a general", "the mice", "the cat", "mouse", "a young mouse got up"]


async def burst(service: StoryService, channels: int, requests: int) -> tuple[list[float], Probe]:
    probe = Probe()
    task = asyncio.create_task(probe.run())
    await asyncio.sleep(0.05)

    async def one(i: int) -> float:
        start = time.perf_counter()
        ref = ChannelRef(100, 1 + i % channels)
        await service.continue_story(ref, PROMPTS[i % len(PROMPTS)], ContinueOptions(length=32))
        return time.perf_counter() - start

    times = list(await asyncio.gather(*(one(i) for i in range(requests))))
    await asyncio.sleep(0.05)
    probe.running = False
    await task
    return times, probe


def line(name: str, times: list[float], probe: Probe) -> str:
    return (
        f"{name:<22} reply p50 {pct(times, 0.5) * 1000:6.1f} ms  p99 {pct(times, 0.99) * 1000:6.1f}"
        f" ms  max {max(times) * 1000:6.1f} ms | loop lag max {max(probe.lags) * 1000:5.1f} ms"
        f"  p99 {pct(probe.lags, 0.99) * 1000:5.1f} ms"
    )


async def trainings_running(service: StoryService) -> None:
    """Until both trainings have finished an epoch (polled: the bench has no callback)."""
    while True:
        progress = [await service.job_progress(ChannelRef(100, 100 + i)) for i in range(2)]
        if all(p is not None and p.epoch >= 1 for p in progress):
            return
        await asyncio.sleep(0.1)


async def load(db: Path) -> None:
    config = load_config(
        data={
            "storage": {"database": str(db)},
            "workers": {"count": 2},
            "training": {"units": 32, "embedding_dim": 16, "max_seconds": 120.0},
            "cooldowns": {"continue_seconds": 0.0},
        },
        environ={},
    )
    store = await StoryStore.open(db)
    for channel_id in range(1, 11):
        await seed_model(store, channel_id, STORY.decode(), units=32)
    async with open_app(config, store=store) as app:
        service = app.service
        for channel_id in range(1, 11):  # load the 10 models first: both bursts hit a warm cache
            await service.continue_story(ChannelRef(100, channel_id), "the cat", ContinueOptions())
        baseline, probe0 = await burst(service, 10, 50)
        jobs = [
            await service.train(
                ChannelRef(100, 100 + i),
                ADMIN,
                "long.txt",
                long_story(30_000, seed=i),
                TrainOptions(),
            )
            for i in range(2)
        ]
        await asyncio.wait_for(trainings_running(service), 120.0)
        loaded, probe1 = await burst(service, 10, 50)
        for i in range(2):
            await service.cancel(ChannelRef(100, 100 + i), ADMIN)
        for job in jobs:
            await service.wait_for_job(job.job_id)
        print("50 concurrent continue_story over 10 channels (in-process service, 32 units):")
        print(line("  no training", baseline, probe0))
        print(line("  2 trainings running", loaded, probe1))
        print(f"  ratio p99 loaded/baseline: {pct(loaded, 0.99) / pct(baseline, 0.99):.2f}")
        print("  " + target_line("2 trainings running", pct(loaded, 0.99), max(probe1.lags) * 1000))
    await store.close()


async def memory(db: Path, channels: int = 1000, bound: int = 32) -> None:
    text = "the cat " + " ".join(f"w{i}" for i in range(1000)) + " ."
    blob = synthetic_blob(sorted(set(text.split())), units=64)
    store = await StoryStore.open(db)
    for channel_id in range(1, channels + 1):
        await seed_model(store, channel_id, text, units=64, blob=blob)
    config = load_config(
        data={
            "storage": {"database": str(db)},
            "cache": {"models": bound},
            "cooldowns": {"continue_seconds": 0.0},
        },
        environ={},
    )
    async with open_app(config, store=store, warm_workers=False) as app:
        service = app.service
        await service.continue_story(ChannelRef(100, 1), "the cat", ContinueOptions())
        base = rss_mb()
        for channel_id in range(1, channels + 1):
            await service.continue_story(ChannelRef(100, channel_id), "the cat", ContinueOptions())
        after = rss_mb()
        print(
            f"{channels} channels with models ({len(blob) / 1e6:.2f} MB blobs), "
            f"cache bound {bound}: "
            f"RSS {base:.0f} MB -> {after:.0f} MB (+{after - base:.0f} MB); all resident would be "
            f"~{channels * len(blob) / 1e6:.0f} MB; {service.cached_models} cached"
        )
    await store.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(load(Path(tmp) / "load.sqlite3"))
        asyncio.run(memory(Path(tmp) / "memory.sqlite3"))


if __name__ == "__main__":
    main()
