"""How much CPU this process may use: the CPUs it may run on, and its cgroup's CPU quota
(Docker's ``--cpus``, a Kubernetes CPU limit, systemd's ``CPUQuota=``), read at start.

Generation threads beyond that share only contend: 3 bot processes held to 0.3 CPU each served
61.6 requests/s with 2 generation threads each and 99.7 with 1 (13.9 against 8.8 ms of CPU a
reply), one process at 0.3 CPU 27.4-27.6 with either (``bench/bench_storage_processes.py
--cpu-quota 0.3 --processes 1,3``, two runs of 2026-12-07 on the 2-core machine, bench/RESULTS.md),
so the service starts no more generation threads than the process's share of CPUs, rounded up.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_allowance(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT) -> float:
    """CPUs this process may use: its affinity, capped by the tightest CPU quota on its cgroup
    path (the group and every parent); the affinity alone where no quota is readable."""
    cpus = float(len(os.sched_getaffinity(0)))
    quota = cgroup_quota(proc_cgroup, root)
    return cpus if quota is None else min(cpus, quota)


def generation_threads(wanted: int) -> int:
    """The generation threads to start for ``workers.generation_threads = wanted`` (logged
    when the CPU share lowers it)."""
    allowance = cpu_allowance()
    threads = thread_count(wanted, allowance)
    if threads < wanted:
        logger.info(
            "%d generation thread(s), not %d: this process may use %.2f CPU",
            threads,
            wanted,
            allowance,
        )
    return threads


def thread_count(wanted: int, allowance: float) -> int:
    """``wanted`` threads, but no more than ``allowance`` CPUs rounded up (at least 1)."""
    return max(1, min(wanted, math.ceil(allowance)))


def cgroup_quota(proc_cgroup: Path, root: Path = CGROUP_ROOT) -> float | None:
    """The tightest CPU quota (in CPUs) on the process's cgroup path, cgroup v2 (``cpu.max``)
    or v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None without one or unreadable."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            quotas += _walk(root, path, _v2_quota)
        elif "cpu" in controllers.split(","):
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                if mount.is_dir():
                    quotas += _walk(mount, path, _v1_quota)
                    break
    return min(quotas) if quotas else None


def _walk(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """The quotas ``read`` finds in the group at ``path`` under ``mount`` and its parents."""
    found: list[float] = []
    group = mount / path.strip("/")
    while True:
        quota = read(group)
        if quota is not None:
            found.append(quota)
        if group == mount or mount not in group.parents:
            return found
        group = group.parent


def _v2_quota(group: Path) -> float | None:
    try:
        limit, period = (group / "cpu.max").read_text().split()
        return None if limit == "max" else int(limit) / int(period)
    except (OSError, ValueError):
        return None


def _v1_quota(group: Path) -> float | None:
    try:
        quota = int((group / "cpu.cfs_quota_us").read_text())
        period = int((group / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period
