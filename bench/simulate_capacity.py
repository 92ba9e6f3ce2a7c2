"""Capacity simulation: a synthetic day of ``/train`` and ``/continue`` against a cluster size.

Replays one day of arrivals (Poisson, with a day/night swing of +-60 % around the mean) from
``--servers`` Discord servers against
  trainings   a FIFO queue in front of ``--cpu-slots`` CPU trainers (one core each) and
              ``--gpu-slots`` GPU trainers (``--gpu-speedup`` times faster; not measured yet)
  continues   per bot shard process: a FIFO queue in front of ``--generation-threads`` threads
              (every shard process serves ``servers / shards`` servers; they are alike, so one is
              simulated)
and prints the queue waits (p50 / p99 / max), the utilisation and the daily volumes.

Service times default to figures measured on the 2-core development machine (docs/scaling.md,
bench/RESULTS.md): an article-size story trains in ``--article-seconds`` on one core (
``bench_executors.py``: local-1 wall / 12 jobs); a book hits the ``max_seconds`` cap
(``--book-seconds``, 600 s; a Grimm epoch is 42 s on 2 cores); a 32-word continuation takes
``--continue-ms`` (``bench_generation_latency.py`` p50, numpy, warm model) plus, on a model cache
miss (``--cache-miss``), ``--load-ms`` to read and rebuild the model.

Example (the plan for 100,000 servers in docs/scaling.md):
  .venv/bin/python bench/simulate_capacity.py --servers 100000 --cpu-slots 48 --shards 40

With ``--measured FILE`` (written by ``bench_storage_processes.py --cpu-quota ... --json FILE``)
a reply's CPU cost is the measured one (a bot process's CPU per ``/continue``, Discord handling
included, at one process) instead of ``--continue-ms``, and the plan's throughput for 1-N bot
processes held to each measured quota (N x quota / CPU per reply, at most the machine's CPUs) is
printed against the measured throughput.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DAY = 86_400.0
SWING = 0.6  # arrivals at the busiest hour are 1.6x the day's mean, 0.4x at the quietest


@dataclass(frozen=True)
class Waits:
    count: int
    p50: float
    p99: float
    worst: float
    utilisation: float


def arrivals(rate_per_day: float, rng: random.Random) -> list[float]:
    """Arrival times over one day: a Poisson process thinned by the day/night profile."""
    if rate_per_day <= 0:
        return []
    peak = rate_per_day / DAY * (1 + SWING)
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= DAY:
            return times
        level = 1 + SWING * math.sin(2 * math.pi * (t / DAY - 0.25))
        if rng.random() < level / (1 + SWING):
            times.append(t)


def fifo(arrived: list[float], service: list[float], servers: list[float]) -> Waits:
    """Waits of a FIFO queue; ``servers`` are speed factors (a job takes service / speed);
    a job goes to the free server that finishes it first."""
    free_at = [(0.0, -speed, i) for i, speed in enumerate(servers)]
    heapq.heapify(free_at)
    waits: list[float] = []
    busy = 0.0
    for t, work in zip(arrived, service, strict=True):
        # The earliest free server; among those free now, the fastest.
        ready = []
        while free_at and free_at[0][0] <= t:
            ready.append(heapq.heappop(free_at))
        if ready:
            ready.sort(key=lambda s: s[1])
            when, neg_speed, i = ready.pop(0)
            for other in ready:
                heapq.heappush(free_at, other)
            start = t
        else:
            when, neg_speed, i = heapq.heappop(free_at)
            start = when
        seconds = work / -neg_speed
        busy += seconds
        waits.append(start - t)
        heapq.heappush(free_at, (start + seconds, neg_speed, i))
    waits.sort()
    if not waits:
        return Waits(0, 0.0, 0.0, 0.0, 0.0)
    return Waits(
        len(waits),
        waits[len(waits) // 2],
        waits[min(len(waits) - 1, int(0.99 * len(waits)))],
        waits[-1],
        busy / (DAY * len(servers)),
    )


def predicted_rate(quota: float, processes: int, cpu_ms: float, cpus: int) -> float:
    """Replies/s of ``processes`` bot processes held to ``quota`` CPU each, at ``cpu_ms`` of CPU
    per reply: the plan's model (CPU-bound; no shared bottleneck)."""
    return min(processes * quota, cpus) / (cpu_ms / 1000)


def compare_with_measured(measured: dict[str, Any]) -> tuple[float, list[str]]:
    """The plan's throughput against the quota bench's; returns the CPU ms per reply it used
    (the largest quota's, at one process) and the lines to print."""
    runs = measured["runs"]
    single = {run["quota"]: run["bot_cpu_ms"] for run in runs if run["processes"] == 1}
    if not single:
        raise SystemExit("--measured: the bench file has no 1-process run to take the cost from")
    lines = [
        f"measured: {measured['bench']} ({measured['date']}, {measured['cpus']} CPUs, "
        f"{measured['units']}-unit models, {measured['in_flight']} requests in flight)"
    ]
    for run in sorted(runs, key=lambda r: (-r["quota"], r["processes"])):
        quota, count = run["quota"], run["processes"]
        if quota not in single:
            continue
        plan = predicted_rate(quota, count, single[quota], measured["cpus"])
        got = run["requests_per_second"]
        error = plan / got - 1
        lines.append(
            f"  {count} process{'es' if count > 1 else '  '} at {quota:.2f} CPU: plan "
            f"{plan:6.1f} req/s, measured {got:6.1f} req/s, plan {error:+.0%} "
            f"({'within' if abs(error) <= 0.2 else 'outside'} 20 %)"
        )
    return single[max(single)], lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=100_000)
    parser.add_argument("--trains-per-server-day", type=float, default=0.2)
    parser.add_argument("--book-share", type=float, default=0.2, help="trainings on a book")
    parser.add_argument("--continues-per-server-day", type=float, default=40.0)
    parser.add_argument("--cpu-slots", type=int, default=48, help="CPU trainers (1 core each)")
    parser.add_argument("--gpu-slots", type=int, default=0)
    parser.add_argument("--gpu-speedup", type=float, default=5.0, help="ASSUMED, not measured")
    parser.add_argument("--article-seconds", type=float, default=5.0)
    parser.add_argument("--book-seconds", type=float, default=600.0)
    parser.add_argument("--shards", type=int, default=40, help="bot shard processes")
    parser.add_argument("--generation-threads", type=int, default=2)
    parser.add_argument("--continue-ms", type=float, default=9.2)
    parser.add_argument("--cache-miss", type=float, default=0.1)
    parser.add_argument("--load-ms", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--measured", type=Path, help="bench_storage_processes.py --json output")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    if args.measured is not None:
        args.continue_ms, lines = compare_with_measured(json.loads(args.measured.read_text()))
        for line in lines:
            print(line)

    trains = arrivals(args.servers * args.trains_per_server_day, rng)
    work = [
        args.book_seconds if rng.random() < args.book_share else args.article_seconds
        for _ in trains
    ]
    slots = [1.0] * args.cpu_slots + [args.gpu_speedup] * args.gpu_slots
    if not slots:
        raise SystemExit("no trainers: give --cpu-slots or --gpu-slots")
    training = fifo(trains, work, slots)

    per_shard = args.servers / args.shards
    continues = arrivals(per_shard * args.continues_per_server_day, rng)
    generation = [
        (args.continue_ms + (args.load_ms if rng.random() < args.cache_miss else 0.0)) / 1000
        for _ in continues
    ]
    serving = fifo(continues, generation, [1.0] * args.generation_threads)

    print(
        f"one synthetic day: {args.servers:,} servers, {args.trains_per_server_day} /train and "
        f"{args.continues_per_server_day} /continue per server, day/night swing +-{SWING:.0%}"
    )
    print(
        f"trainers: {args.cpu_slots} CPU + {args.gpu_slots} GPU (x{args.gpu_speedup}, assumed); "
        f"service {args.article_seconds} s (article) / {args.book_seconds} s (book, "
        f"{args.book_share:.0%} of jobs)"
    )
    print(
        f"  /train     {training.count:>9,} jobs   wait p50 {training.p50:8.1f} s   "
        f"p99 {training.p99:8.1f} s   max {training.worst:8.1f} s   "
        f"utilisation {training.utilisation:.0%}"
    )
    print(
        f"bot shards: {args.shards} processes x {args.generation_threads} generation threads, "
        f"{per_shard:,.0f} servers each; {args.continue_ms:.1f} ms per reply"
        f" + {args.load_ms:.0f} ms on {args.cache_miss:.0%} cache misses"
    )
    print(
        f"  /continue  {serving.count:>9,} / shard wait p50 {serving.p50 * 1000:6.1f} ms  "
        f"p99 {serving.p99 * 1000:6.1f} ms  max {serving.worst * 1000:6.1f} ms  "
        f"utilisation {serving.utilisation:.0%}"
    )


if __name__ == "__main__":
    main()
