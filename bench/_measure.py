"""Measuring helpers shared by the bench scripts: resident memory, percentiles, event-loop lag.

Not a bench itself (``make bench`` runs ``bench_*.py`` only). The scripts put the repository root
on ``sys.path`` and import it as ``bench._measure``, like ``bench.markov``.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

# The lag probe's sleep: short enough to see a blocked loop, long enough to cost nothing.
PROBE_SLEEP_SECONDS = 0.010


def rss_mb() -> float:
    """This process's resident memory in MiB (Linux /proc), after a collection; NaN elsewhere."""
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank from below, no interpolation."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Probe:
    """Event-loop lag: ``run()`` sleeps 10 ms in a loop and records how late each wake-up is."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.running = True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.running:
            start = loop.time()
            await asyncio.sleep(PROBE_SLEEP_SECONDS)
            self.lags.append(loop.time() - start - PROBE_SLEEP_SECONDS)

    def figures(self) -> tuple[float, float, int]:
        """(max lag ms, p99 lag ms, samples)."""
        return max(self.lags) * 1000, pct(self.lags, 0.99) * 1000, len(self.lags)
