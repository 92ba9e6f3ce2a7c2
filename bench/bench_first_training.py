"""The first /train of a fresh bot: seconds from the command to a committed article model.

Issue 16's target: <= 5 s wall with the local pool warmed at start (the default). Each round
opens a fresh app on a fresh database (so a fresh spawned training worker), in two ways,
interleaved:

- ``cold``: the pool is not warmed (``warm_workers=False``): the first job spawns the worker
  and imports TensorFlow itself (the baseline: what warming saves);
- ``warm``: the pool is warmed at start, as the bot does; the start is timed on its own.

Per run it prints ``start`` (opening the app; warm: until the worker has imported the training
code, which the bot does in the background while it connects to Discord), the wall time of the
first /train of the article's story (submit to committed model), split into the first
training step (tracing and compiling), the rest of training, and ``other`` (cold: spawning the
worker and importing TensorFlow; both: tokenizing, the hand-off, saving, committing). Medians
over ``--rounds``.
Run: .venv/bin/python bench/bench_first_training.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.app import open_app  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.core.api import ChannelRef, Member, TrainOptions  # noqa: E402
from bot.executors.local import LocalProcessExecutor  # noqa: E402
from model import TrainingFigures  # noqa: E402

STORY = (REPO / "data" / "belling-the-cat.txt").read_bytes()
ADMIN = Member(1, "bench", True)
TARGET_SECONDS = 5.0


async def first_training(folder: Path, warm: bool) -> dict[str, float]:
    config = load_config(data={"storage": {"database": str(folder / "first.sqlite3")}}, environ={})
    opened = time.perf_counter()
    async with open_app(config, warm_workers=warm) as app:
        if warm:  # the bot's start returns at once; its worker imports in the background
            pool = app.executor
            assert isinstance(pool, LocalProcessExecutor)
            while pool.ready_workers < pool.size:  # noqa: ASYNC110 (the pool has no event)
                await asyncio.sleep(0.01)
        started = time.perf_counter() - opened
        t0 = time.perf_counter()
        job = await app.service.train(
            ChannelRef(None, 1), ADMIN, "story.txt", STORY, TrainOptions(seed=1)
        )
        result = await app.service.wait_for_job(job.job_id)
        wall = time.perf_counter() - t0
        assert result.state == "done", result.error
        record = await app.store.active_model(1)
        assert record is not None
        figures = TrainingFigures.from_dict(record.figures)
    first_step = figures.first_step_seconds or 0.0
    return {
        "start": started,
        "wall": wall,
        "tracing": first_step,
        "training": figures.seconds - first_step,
        "other": wall - figures.seconds,
        "epochs": float(figures.epochs),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    for _ in range(args.rounds):
        for label in runs:
            with tempfile.TemporaryDirectory() as folder:
                runs[label].append(asyncio.run(first_training(Path(folder), label == "warm")))
    print(f"first /train of the article's story on a fresh bot, medians of {args.rounds} runs")
    columns = ("start", "wall", "tracing", "training", "other", "epochs")
    print(f"{'pool':>6}" + "".join(f"{name:>10}" for name in columns))
    for label, values in runs.items():
        medians = [statistics.median(v[name] for v in values) for name in columns]
        print(f"{label:>6}" + "".join(f"{m:>10.2f}" for m in medians))
    warm = statistics.median(v["wall"] for v in runs["warm"])
    cold = statistics.median(v["wall"] for v in runs["cold"])
    print(
        f"warm first /train {warm:.2f} s (target <= {TARGET_SECONDS:.0f} s: "
        f"{'met' if warm <= TARGET_SECONDS else 'MISSED'}); baseline cold pool {cold:.2f} s; "
        f"the import moved to start: {statistics.median(v['start'] for v in runs['warm']):.2f} s"
    )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
