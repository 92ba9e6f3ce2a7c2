"""Training executors side by side: the local spawned pool (1 and 2 workers) and local Ray.

For each executor, in one run: start it, warm every trainer with one training (TensorFlow import
and first tracing), then submit ``--jobs`` (12) article-story trainings at once through the
service (one channel each) and measure
  wall      seconds from the first submit to the last job done
  overhead  per-job overhead vs the local pool with the same concurrency:
            (wall - wall of local-2) / jobs   (target <= 0.5 s)
  lag       the bot's event-loop lag while they run: the max of each batch (median and
            worst over the batches; target max <= 20 ms) and the p99 (median)
  idle lag  the same probe in a separate idle process running alongside each batch: what the
            shared machine's scheduler alone costs a normal-priority process (the trainers are
            niced), the baseline the bot's lag is read against
  start lag the bot's loop lag from opening the app until every trainer is warm; Ray joined
            before the loop starts, as the bot does (``executor.prepare()``), and once more
            joined from inside the loop (``start()`` alone): ``ray.init`` runs in the Ray driver
            process, so neither may stall the bot's loop (in-process it stalled 0.6-2.2 s)
  rss       this process's resident memory after the batch (the bot side only: Ray's raylet,
            GCS and workers, like the local pool's worker processes, are other processes);
            ``driver`` the Ray driver process's, separately (the bot process never imports Ray)
The Ray cluster is started by the executor's driver process (2 CPUs, no dashboard, 200 MB object
store), one CPU per job, two jobs at once: the same concurrency as local-2.

Run: .venv/bin/python bench/bench_executors.py [--jobs 12] [--rounds 3] [--skip-ray]
With ``--rounds N`` each figure is the median of N batches; the load average is printed per
executor. The machine is shared: compare the rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
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


IDLE_PROBE = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from bench._measure import Probe
async def main():
    probe = Probe()
    task = asyncio.create_task(probe.run())
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    probe.running = False
    await task
    print(*probe.figures()[:2])
asyncio.run(main())
"""


def idle_probe() -> subprocess.Popen[str]:
    """A separate process probing its own idle loop until its stdin closes."""
    return subprocess.Popen(
        [sys.executable, "-c", IDLE_PROBE, str(REPO)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def idle_figures(process: subprocess.Popen[str]) -> tuple[float, float]:
    """(max, p99) ms of the idle process's loop lag."""
    out, _ = process.communicate(timeout=60)
    worst, p99 = out.split()
    return float(worst), float(p99)


async def startup_lag_in_loop(make: Callable[[], TrainingExecutor]) -> float:
    """The loop's lag max (ms) while the executor starts from inside it (no ``prepare``)."""
    executor = make()
    probe = Probe()
    probing = asyncio.create_task(probe.run())
    await asyncio.sleep(0.1)
    await executor.start()
    await asyncio.sleep(0.5)
    probe.running = False
    await probing
    await executor.close()
    return probe.figures()[0]


async def measure(
    make: Callable[[], TrainingExecutor], jobs: int, rounds: int, db: Path
) -> dict[str, float]:
    config = load_config(
        data={"storage": {"database": str(db)}, "workers": {"queue_length": jobs + 4}},
        environ={},
    )
    executor = make()
    executor.prepare()  # as the bot does, before its loop serves anything
    started = time.perf_counter()
    start_probe = Probe()
    start_probing = asyncio.create_task(start_probe.run())
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
        start_probe.running = False
        await start_probing
        walls: list[float] = []
        lags: list[float] = []
        p99s: list[float] = []
        idle: list[tuple[float, float]] = []
        loads: list[float] = []
        for round_no in range(rounds):
            idler = idle_probe()
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
            idle.append(await asyncio.to_thread(idle_figures, idler))
            loads.append(os.getloadavg()[0])
        rss = rss_mb()
        driver_pid = getattr(executor, "driver_pid", None)  # the Ray executor's driver process
        driver_rss = float("nan") if driver_pid is None else rss_mb(driver_pid)
        bot_ray = "ray" in sys.modules
    await executor.close()
    return {
        "ready": ready,
        "start_lag": start_probe.figures()[0],
        "wall": statistics.median(walls),
        "lag": statistics.median(lags),
        "lag_worst": max(lags),
        "p99": statistics.median(p99s),
        "idle_lag": statistics.median(w for w, _ in idle),
        "idle_worst": max(w for w, _ in idle),
        "rss": rss,
        "driver_rss": driver_rss,
        "bot_imports_ray": float(bot_ray),
        "load": statistics.median(loads),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--skip-local-1", action="store_true", help="local-2 (the base) and Ray")
    args = parser.parse_args()
    variants: list[tuple[str, Callable[[], TrainingExecutor]]] = [
        ("local-1", local(1)),
        ("local-2", local(2)),
    ]
    if args.skip_local_1:
        variants = variants[1:]
    if not args.skip_ray:
        variants.append(("ray-2", ray_local))
    rows: dict[str, dict[str, float]] = {}
    for name, make in variants:
        with tempfile.TemporaryDirectory() as folder:
            rows[name] = asyncio.run(measure(make, args.jobs, args.rounds, Path(folder) / "b.db"))
        print(f"  {name} measured: {rows[name]}", flush=True)
    in_loop = None
    if not args.skip_ray:
        in_loop = asyncio.run(startup_lag_in_loop(ray_local))
        print("  ray-2 joined from inside the loop measured", flush=True)
    base = rows["local-2"]["wall"]
    print(
        f"{args.jobs} article-story trainings (512 units) submitted at once; "
        f"median of {args.rounds} batch(es); the bot's event loop probed every 10 ms"
    )
    header = (
        f"{'executor':<10}{'ready s':>8}{'start lag':>10}{'wall s':>8}{'jobs/min':>9}"
        f"{'overhead s/job':>15}{'lag max med/worst':>19}{'p99':>6}{'idle lag med/worst':>20}"
        f"{'RSS MiB':>8}{'driver':>7}{'load':>6}"
    )
    print(header)
    for name, row in rows.items():
        overhead = (row["wall"] - base) / args.jobs
        per_minute = args.jobs / row["wall"] * 60
        print(
            f"{name:<10}{row['ready']:>8.1f}{row['start_lag']:>10.1f}{row['wall']:>8.1f}"
            f"{per_minute:>9.1f}{overhead:>+15.2f}"
            f"{row['lag']:>11.1f} /{row['lag_worst']:>6.1f}{row['p99']:>6.1f}"
            f"{row['idle_lag']:>12.1f} /{row['idle_worst']:>6.1f}{row['rss']:>8.0f}"
            f"{row['driver_rss']:>7.0f}{row['load']:>6.1f}"
        )
    print(
        "ready = start-up until every trainer finished one warm-up training; start lag = the "
        "loop's lag max (ms) meanwhile; lag/idle lag in ms; RSS MiB = the bot process, driver = "
        "the Ray driver process (MiB); load = 1-minute load average"
    )
    if "ray-2" in rows and in_loop is not None:
        ray = rows["ray-2"]
        overhead = (ray["wall"] - base) / args.jobs
        print(
            f"ray-2 start lag: {ray['start_lag']:.1f} ms joined before the loop (as the bot), "
            f"{in_loop:.1f} ms joined from inside it (both by the driver process)"
        )
        print(
            f"ray-2 memory: bot process {ray['rss']:.0f} MiB, Ray driver process "
            f"{ray['driver_rss']:.0f} MiB; the bot imported Ray: {bool(ray['bot_imports_ray'])}"
        )
        print(f"ray-2 wall / local-2 wall: {ray['wall'] / base:.2f}")
        print(f"target ray per-job overhead <= 0.5 s: {'met' if overhead <= 0.5 else 'MISSED'}")
    for name, row in rows.items():
        verdict = "met" if row["lag"] <= 20 else "MISSED"
        print(
            f"target {name} lag max <= 20 ms (median of batches): {verdict} "
            f"(idle process alongside: {row['idle_lag']:.1f} ms)"
        )


if __name__ == "__main__":
    main()
