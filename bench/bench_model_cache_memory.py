"""Resident memory of the bot process as its model cache fills, bounded by count and by MiB.

One article-size model (512 units) is trained through the service and its stored blob is copied
into 63 more channels. Then, in a fresh process per configuration, one /continue per channel
(256 sampled symbols) loads each model into the LRU cache:

- ``float32``: the baseline, models stored as float32 (the cache before issue 16, with its
  other changes), ``[cache] models = 64`` and ``megabytes`` large enough for all (count bound);
- ``compact``: the product, int8 recurrent matrices and float16 for the rest, with float32
  copies for the most recently used models (``HOT_MODELS``), same bounds; target (issue 16): 64
  models grow the bot by <= 150 MB;
- ``compact, 64 MiB``: the same with ``megabytes = 64``: RSS growth must stay within 10 % of the
  bound (and of what the cache counts).

RSS is read from /proc/self/status (Linux). Growth is measured from the process with no model
(``0 models``) to the peak while the cache fills, less the first reply's fixed cost (RSS after
it, less the first model's counted size: lazy imports, SQLite's page cache, the generation
thread's stack; ~8 MiB, paid once whatever the number of models). The script exits non-zero
when the bounded run grows by more than 1.1 x ``megabytes``.
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
from model import TrainedModel  # noqa: E402

STORY = (REPO / "data" / "belling-the-cat.txt").read_bytes()
ADMIN = Member(1, "bench", True)
CHANNELS = 64
MAX_MODELS = 64
BOUNDED_MB = 64
BASELINE_MB = 4096
TARGET_MB = 150  # growth for 64 cached article models (issue 16)
MARGIN = 0.10  # the byte bound holds within 10 % of RSS growth
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


async def measure(db: Path, megabytes: int, storage: str) -> None:
    """Print ``zero base peak last models cached_mib per_model_mib`` (in its own process).

    ``zero``: RSS with no model cached; ``base``: with one; ``last``: after all the replies.
    """
    if storage == "float32":
        from bot.core import model_cache
        from model.generation import NumpyLSTM

        def float32_network(model: TrainedModel, compact: bool = True) -> NumpyLSTM:
            return NumpyLSTM(model, compact=False)

        model_cache.NumpyLSTM = float32_network  # type: ignore[assignment,misc]
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


def run(
    db: Path, megabytes: int, storage: str
) -> tuple[float, float, float, float, int, float, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", str(db), str(megabytes), storage],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout.split()
    zero, base, peak, last, models, cached, per_model = (float(x) for x in out[-7:])
    return zero, base, peak, last, int(models), cached, per_model


def main() -> None:
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    runs = {
        "float32": (BASELINE_MB, "float32"),
        "compact": (BASELINE_MB, "compact"),
        f"compact, {BOUNDED_MB} MiB": (BOUNDED_MB, "compact"),
    }
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.sqlite3"
        asyncio.run(prepare(db))
        figures = {label: run(db, mb, storage) for label, (mb, storage) in runs.items()}
    print(
        f"bot process resident memory, {CHANNELS} channels (article story, 512 units); "
        f"counted per model: float32 {figures['float32'][6]:.2f} MiB, "
        f"compact {figures['compact'][6]:.2f} MiB (with its float32 copies while hot)"
    )
    print(
        f"{'storage, bound':>24}{'RSS 0 models':>14}{'1 model':>9}{'last':>8}{'peak':>8}"
        f"{'cached':>8}{'cache MiB':>11}{'growth MiB':>12}{'x float32':>11}"
    )

    def growth_of(label: str) -> float:
        zero, base, peak, _, _, _, first = figures[label]
        return peak - zero - (base - zero - first)

    base_growth = growth_of("float32")
    for label, (zero, base, peak, last, models, cached, _) in figures.items():
        growth = growth_of(label)
        print(
            f"{label:>24}{zero:>14.1f}{base:>9.1f}{last:>8.1f}{peak:>8.1f}{models:>8}"
            f"{cached:>11.1f}{growth:>12.1f}{growth / base_growth:>10.2f}x"
        )
    zero, base, _, _, models, _, first = figures["compact"]
    print(
        f"first reply's fixed cost {base - zero - first:.1f} MiB; "
        f"compact, {models} models cached: growth {growth_of('compact'):.1f} MiB "
        f"(target <= {TARGET_MB} MB = {TARGET_MB * 1e6 / 2**20:.0f} MiB; "
        f"baseline float32 {base_growth:.1f} MiB)"
    )
    cached = figures[f"compact, {BOUNDED_MB} MiB"][5]
    growth = growth_of(f"compact, {BOUNDED_MB} MiB")
    limit = BOUNDED_MB * (1 + MARGIN)
    print(
        f"bound {BOUNDED_MB} MiB: growth {growth:.1f} MiB, counted {cached:.1f} MiB; "
        f"growth <= bound + {MARGIN:.0%} ({limit:.1f}): {growth <= limit}"
    )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if growth > limit:
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        asyncio.run(measure(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
    else:
        main()
