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


def rss_mb(pid: int | None = None) -> float:
    """Resident memory in MiB (Linux /proc) of this process (after a collection) or of ``pid``;
    NaN elsewhere or when ``pid`` is gone."""
    if pid is None:
        gc.collect()
    try:
        status = Path(f"/proc/{pid or 'self'}/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
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
