"""Training executors side by side: the local spawned pool (1 and 2 workers) and local Ray.

For each executor, in one run: start it, warm every trainer with one training (TensorFlow import
and first tracing), then submit ``--jobs`` (12) article-story trainings at once through the
service (one channel each) and measure
  wall      seconds from the first submit to the last job done
  overhead  per-job overhead vs the local pool with the same concurrency:
            (wall - wall of local-2) / jobs   (target <= 0.5 s)
  lag       the bot's event-loop lag while they run, max and p99 (target max <= 20 ms)
  rss       this process's resident memory after the batch (the bot side only: Ray's raylet,
            GCS and workers, like the local pool's worker processes, are other processes)
The Ray cluster is started by the executor itself (2 CPUs, no dashboard, 200 MB object store),
one CPU per job, two jobs at once: the same concurrency as local-2.

Run: .venv/bin/python bench/bench_executors.py [--jobs 12] [--rounds 1] [--skip-ray]
With ``--rounds N`` each figure is the median of N batches. The machine is shared: compare the
rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._measure import Probe, rss_mb  # noqa: E402
from bot.app import open_app  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.core.api import ChannelRef, Member, TrainOptions  # noqa: E402
from bot.core.executor import TrainingExecutor  # noqa: E402

STORY = (REPO / "data" / "belling-the-cat.txt").read_bytes()
ADMIN = Member(1, "bench", True)


def local(size: int) -> Callable[[], TrainingExecutor]:
    def make() -> TrainingExecutor:
        from bot.executors.local import LocalProcessExecutor

        return LocalProcessExecutor(size)

    return make


def ray_local() -> TrainingExecutor:
    from bot.executors.ray_cluster import RaySettings, RayTrainingExecutor

    return RayTrainingExecutor(
        RaySettings(
            cpus_per_job=1.0,
            max_concurrent_jobs=2,
            local_cpus=2,
            local_object_store_bytes=200 * 1024 * 1024,
        )
    )


async def measure(
    make: Callable[[], TrainingExecutor], jobs: int, rounds: int, db: Path
) -> dict[str, float]:
    config = load_config(
        data={"storage": {"database": str(db)}, "workers": {"queue_length": jobs + 4}},
        environ={},
    )
    executor = make()
    started = time.perf_counter()
    async with open_app(config, executor=executor) as app:
        service = app.service
        # Warm every trainer: one training each, at once.
        warm = [
            await service.train(
                ChannelRef(None, 10_000 + i), ADMIN, "w.txt", STORY, TrainOptions(seed=0)
            )
            for i in range(executor.capacity)
        ]
        for job in warm:
            assert (await service.wait_for_job(job.job_id)).state == "done"
        ready = time.perf_counter() - started
        walls: list[float] = []
        lags: list[float] = []
        p99s: list[float] = []
        for round_no in range(rounds):
            probe = Probe()
            probing = asyncio.create_task(probe.run())
            start = time.perf_counter()
            submitted = [
                await service.train(
                    ChannelRef(None, round_no * 1000 + i),
                    ADMIN,
                    "story.txt",
                    STORY,
                    TrainOptions(seed=i),
                )
                for i in range(jobs)
            ]
            for job in submitted:
                result = await service.wait_for_job(job.job_id)
                assert result.state == "done", result.error
            walls.append(time.perf_counter() - start)
            probe.running = False
            await probing
            worst, p99, _ = probe.figures()
            lags.append(worst)
            p99s.append(p99)
        rss = rss_mb()
    await executor.close()
    return {
        "ready": ready,
        "wall": statistics.median(walls),
        "lag": statistics.median(lags),
        "p99": statistics.median(p99s),
        "rss": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    variants: list[tuple[str, Callable[[], TrainingExecutor]]] = [
        ("local-1", local(1)),
        ("local-2", local(2)),
    ]
    if not args.skip_ray:
        variants.append(("ray-2", ray_local))
    rows: dict[str, dict[str, float]] = {}
    for name, make in variants:
        with tempfile.TemporaryDirectory() as folder:
            rows[name] = asyncio.run(measure(make, args.jobs, args.rounds, Path(folder) / "b.db"))
        print(f"  {name} measured", flush=True)
    base = rows["local-2"]["wall"]
    print(
        f"{args.jobs} article-story trainings (512 units) submitted at once; "
        f"median of {args.rounds} batch(es); the bot's event loop probed every 10 ms"
    )
    header = (
        f"{'executor':<10}{'ready s':>9}{'wall s':>9}{'jobs/min':>10}{'overhead s/job':>16}"
        f"{'lag max ms':>12}{'lag p99 ms':>12}{'bot RSS MiB':>13}"
    )
    print(header)
    for name, row in rows.items():
        overhead = (row["wall"] - base) / args.jobs
        per_minute = args.jobs / row["wall"] * 60
        print(
            f"{name:<10}{row['ready']:>9.1f}{row['wall']:>9.1f}{per_minute:>10.1f}"
            f"{overhead:>+16.2f}{row['lag']:>12.1f}{row['p99']:>12.1f}{row['rss']:>13.0f}"
        )
    print("ready = start-up until every trainer finished one warm-up training")
    if "ray-2" in rows:
        ray = rows["ray-2"]
        overhead = (ray["wall"] - base) / args.jobs
        print(f"ray-2 wall / local-2 wall: {ray['wall'] / base:.2f}")
        print(f"target ray per-job overhead <= 0.5 s: {'met' if overhead <= 0.5 else 'MISSED'}")
        print(f"target ray lag max <= 20 ms: {'met' if ray['lag'] <= 20 else 'MISSED'}")


if __name__ == "__main__":
    main()
