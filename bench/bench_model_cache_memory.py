"""Resident memory of the bot process as its model cache fills, bounded by count and by MiB.

One article-size model (512 units) is trained through the service and its stored blob is copied
into 49 more channels. Then, in a fresh process per configuration, one /continue per channel
(256 sampled symbols, so most of each model's first-step table gets built) loads each model
into the LRU cache:

- baseline: ``[cache] models = 64``, ``megabytes`` large enough for all 50 (count bound only);
- bounded: the same count bound and ``megabytes = 64``.

RSS is read from /proc/self/status (Linux). The bounded run must grow by at most ``megabytes``
plus ``OVERHEAD_MB`` (SQLite's page cache, the model being loaded and the copies
``from_bytes`` makes, the allocator's freed-but-kept memory); the script exits non-zero if not.
Run: .venv/bin/python bench/bench_model_cache_memory.py
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._measure import rss_mb  # noqa: E402
from bot.app import open_app  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.core.api import ChannelRef, ContinueOptions, Member, TrainOptions  # noqa: E402
from bot.core.service import StoryService  # noqa: E402
from bot.core.store import NewModel, NewStory  # noqa: E402
from bot.store.sqlite import SqliteStoryStore as StoryStore  # noqa: E402

STORY = (REPO / "data" / "belling-the-cat.txt").read_bytes()
ADMIN = Member(1, "bench", True)
CHANNELS = 50
MAX_MODELS = 64
BOUNDED_MB = 64
BASELINE_MB = 4096
OVERHEAD_MB = 24
REPLY = ContinueOptions(length=256, temperature=1.0, seed=1)


async def prepare(db: Path) -> None:
    config = load_config(data={"storage": {"database": str(db)}}, environ={})
    # open_app closes the training worker even after a failure here.
    async with open_app(config, warm_workers=False) as app:
        await copy_trained_model(app.service, app.store)


async def copy_trained_model(service: StoryService, store: StoryStore) -> None:
    job = await service.train(ChannelRef(None, 1), ADMIN, "story.txt", STORY, TrainOptions(seed=1))
    result = await service.wait_for_job(job.job_id)
    assert result.state == "done", result.error
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
            model=NewModel(
                config=source.config,
                vocabulary=vocabulary,
                blob=blob,
                figures=source.figures,
                options={},
            ),
            story_ids=copy.story_ids,
            keep_versions=3,
        )


async def measure(db: Path, megabytes: int) -> None:
    """Print ``zero base peak last models cached_mib per_model_mib`` (in its own process).

    ``zero``: RSS with no model cached; ``base``: with one; ``last``: after all 50 replies.
    """
    config = load_config(
        data={
            "storage": {"database": str(db)},
            "cache": {"models": MAX_MODELS, "megabytes": megabytes},
            "cooldowns": {"continue_seconds": 0.0},
        },
        environ={},
    )
    async with open_app(config, warm_workers=False) as app:
        await serve(app.service)


async def serve(service: StoryService) -> None:
    zero = rss_mb()
    await service.continue_story(ChannelRef(None, 1), "had a general", REPLY)
    per_model = service.cache_stats.bytes / 2**20
    base = peak = rss_mb()
    for channel_id in range(2, CHANNELS + 1):
        await service.continue_story(ChannelRef(None, channel_id), "had a general", REPLY)
        peak = max(peak, rss_mb())
    stats = service.cache_stats
    print(zero, base, peak, rss_mb(), stats.models, stats.bytes / 2**20, per_model, flush=True)


def run(db: Path, megabytes: int) -> tuple[float, float, float, float, int, float, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", str(db), str(megabytes)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout.split()
    zero, base, peak, last, models, cached, per_model = (float(x) for x in out[-7:])
    return zero, base, peak, last, int(models), cached, per_model


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.sqlite3"
        asyncio.run(prepare(db))
        figures = {mb: run(db, mb) for mb in (BASELINE_MB, BOUNDED_MB)}
    per_model = figures[BOUNDED_MB][6]
    print(
        f"bot process resident memory, {CHANNELS} channels (article story, 512 units, "
        f"{per_model:.2f} MiB counted per model)"
    )
    print(
        f"{'bound':>24}{'RSS 0 models':>14}{'1 model':>9}{'50 replies':>12}{'cached':>8}"
        f"{'cache MiB':>11}{'peak MB':>9}{'growth MB':>11}"
    )
    for mb, (zero, base, peak, last, models, cached, _) in figures.items():
        label = f"{MAX_MODELS} models" if mb == BASELINE_MB else f"{MAX_MODELS} models/{mb} MiB"
        print(
            f"{label:>24}{zero:>14.1f}{base:>9.1f}{last:>12.1f}{models:>8}{cached:>11.1f}"
            f"{peak:>9.1f}{peak - base:>11.1f}"
        )
    _, base, peak, *_ = figures[BOUNDED_MB]
    growth = peak - base
    baseline_growth = figures[BASELINE_MB][2] - figures[BASELINE_MB][1]
    print(f"ratio growth bounded/baseline: {growth / baseline_growth:.2f}")
    limit = BOUNDED_MB + OVERHEAD_MB
    print(f"bounded growth {growth:.1f} MB <= {BOUNDED_MB} + {OVERHEAD_MB} MB: {growth <= limit}")
    if growth > limit:
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        asyncio.run(measure(Path(sys.argv[2]), int(sys.argv[3])))
    else:
        main()
