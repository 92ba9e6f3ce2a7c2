"""Processes held to a share of a CPU, each in a cgroup of its own (for the scale-out bench).

cgroup v1 (the ``cpu`` controller: ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``) or v2
(``cpu.max``), whichever the machine mounts; creating groups needs root (or a delegated
subtree). A group may also be given a high weight (v1 ``cpu.shares``, v2 ``cpu.weight``) so that
the bench's processes get the CPU their quota allows however busy the rest of the machine is:
the figure is then scaling under the quota, not a race with unrelated work.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
HIGH_WEIGHT_V1 = 262_144  # cpu.shares: the most v1 allows (a process gets 1,024)
HIGH_WEIGHT_V2 = 10_000  # cpu.weight: the most v2 allows (the default is 100)


class QuotaUnavailable(RuntimeError):
    """This machine cannot hold a process to a CPU quota here (the reason says why)."""


@dataclass(frozen=True)
class Throttling:
    periods: int  # scheduler periods in which the group ran
    throttled: int  # periods in which it hit its quota
    throttled_seconds: float


def cgroup_version() -> str:
    """'v2' (a unified hierarchy), 'v1' (a ``cpu`` controller mount) or a QuotaUnavailable."""
    if (ROOT / "cgroup.controllers").exists():
        if "cpu" not in (ROOT / "cgroup.controllers").read_text().split():
            raise QuotaUnavailable("cgroup v2 without the cpu controller")
        version = "v2"
    elif (ROOT / "cpu" / "cpu.cfs_quota_us").exists():
        version = "v1"
    else:
        raise QuotaUnavailable(f"no cgroup cpu controller under {ROOT}")
    if not os.access(_base(version), os.W_OK):
        raise QuotaUnavailable(
            f"cgroup {version}: {_base(version)} is not writable (run as root or delegate it)"
        )
    return version


def _base(version: str) -> Path:
    return ROOT if version == "v2" else ROOT / "cpu"


class CpuGroup:
    """A cgroup named ``name`` with at most ``cpus`` CPUs (None: no quota) and, if ``high``, a
    high weight. A context manager: on exit its processes go back to the root group and it is
    removed."""

    def __init__(self, name: str, cpus: float | None, *, high: bool = False) -> None:
        self.version = cgroup_version()
        self.path = _base(self.version) / name
        self.cpus = cpus
        self.high = high

    def __enter__(self) -> CpuGroup:
        if self.version == "v2":
            control = ROOT / "cgroup.subtree_control"
            if "cpu" not in control.read_text().split():
                control.write_text("+cpu")
        self.path.mkdir(exist_ok=True)
        if self.version == "v1":
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            quota = -1 if self.cpus is None else round(self.cpus * PERIOD_US)
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
            if self.high:
                (self.path / "cpu.shares").write_text(str(HIGH_WEIGHT_V1))
        else:
            quota_text = "max" if self.cpus is None else str(round(self.cpus * PERIOD_US))
            (self.path / "cpu.max").write_text(f"{quota_text} {PERIOD_US}")
            if self.high:
                (self.path / "cpu.weight").write_text(str(HIGH_WEIGHT_V2))
        return self

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the group; its later children follow."""
        with contextlib.suppress(ProcessLookupError):
            (self.path / "cgroup.procs").write_text(str(pid))

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the group from its first instruction (a shell joins the group,
        then becomes the command: same process id)."""
        procs = self.path / "cgroup.procs"
        return ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]

    def throttling(self) -> Throttling:
        stat = dict(
            line.split() for line in (self.path / "cpu.stat").read_text().splitlines() if line
        )
        if self.version == "v1":
            seconds = int(stat.get("throttled_time", 0)) / 1e9
        else:
            seconds = int(stat.get("throttled_usec", 0)) / 1e6
        return Throttling(int(stat["nr_periods"]), int(stat["nr_throttled"]), seconds)

    def __exit__(self, *exc: object) -> None:
        parent = self.path.parent / "cgroup.procs"
        for _ in range(50):
            pids = (self.path / "cgroup.procs").read_text().split()
            for pid in pids:
                with contextlib.suppress(OSError):
                    parent.write_text(pid)
            with contextlib.suppress(OSError):
                self.path.rmdir()
                return


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux /proc), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
