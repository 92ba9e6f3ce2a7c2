"""Resident memory of the bot process with 0, 1 and 50 cached channel models.

One article-size model (512 units) is trained through the service, its stored blob is copied into
49 more channels, and one /continue per channel loads each into the LRU cache (bound 64).
RSS is read from /proc/self/status (Linux). Run: .venv/bin/python bench/bench_model_cache_memory.py
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.config import load_config  # noqa: E402
from bot.service import ChannelRef, ContinueOptions, Member, StoryService, TrainOptions  # noqa: E402
from bot.storage import NewStory, StoryStore  # noqa: E402

STORY = (REPO / "data" / "belling-the-cat.txt").read_bytes()
ADMIN = Member(1, "bench", True)
CHANNELS = 50


def rss_mb() -> float:
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(db: Path) -> list[tuple[int, float]]:
    config = load_config(
        data={"storage": {"database": str(db)}, "cache": {"models": 64}}, environ={}
    )
    store = await StoryStore.open(db)
    service = StoryService(config, store)
    await service.start(warm_workers=False)
    job = await service.train(ChannelRef(None, 1), ADMIN, "story.txt", STORY, TrainOptions(seed=1))
    result = await service.wait_for_job(job.job_id)
    assert result.state == "done", result.error
    await service.pool.close()  # the worker is another process; only the bot's RSS counts
    source = await store.active_model(1)
    assert source is not None
    blob = await store.model_blob(source.id)
    assert blob is not None
    vocabulary = [str(i) for i in range(source.vocabulary_size)]
    for channel_id in range(2, CHANNELS + 1):
        copy = await store.add_story_and_job(
            channel_id=channel_id,
            guild_id=None,
            channel_name=None,
            story=NewStory(
                "story.txt", 1, "b", STORY.decode(), "0" * 64, "utf-8", len(STORY), 204, 112
            ),
            append=False,
            requested_by=1,
            requested_by_name="b",
            options={},
        )
        await store.activate_model(
            job_id=copy.id,
            channel_id=channel_id,
            config=source.config,
            vocabulary=vocabulary,
            blob=blob,
            figures=source.figures,
            options={},
            story_ids=copy.story_ids,
            keep_versions=3,
        )
    figures = [(0, rss_mb())]
    for channel_id in range(1, CHANNELS + 1):
        await service.continue_story(
            ChannelRef(None, channel_id), "had a general", ContinueOptions()
        )
        if channel_id in (1, CHANNELS):
            figures.append((service.cached_models, rss_mb()))
    await service.close()
    await store.close()
    return figures


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        figures = asyncio.run(measure(Path(folder) / "bench.sqlite3"))
    print("bot process resident memory by cached models (article story, 512 units)")
    print(f"{'models':>8}{'RSS MB':>10}{'per model MB':>15}")
    base = figures[0][1]
    for count, mb in figures:
        per = (mb - base) / count if count else 0.0
        print(f"{count:>8}{mb:>10.1f}{per:>15.2f}")


if __name__ == "__main__":
    main()
