"""The process's CPU share (bot/cpu_share.py): the quota read from cgroup v1 and v2 files, and
from a real cgroup the process starts in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cpu_quota import CpuGroup, QuotaUnavailable
from bot.cpu_share import cgroup_quota, cpu_allowance, thread_count

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_quota_is_the_tightest_on_the_path(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    _write(proc, "0::/bots/shard1\n")
    root = tmp_path / "sys"
    _write(root / "cpu.max", "max 100000\n")
    _write(root / "bots" / "cpu.max", "150000 100000\n")
    _write(root / "bots" / "shard1" / "cpu.max", "30000 100000\n")
    assert cgroup_quota(proc, root) == pytest.approx(0.3)
    _write(root / "bots" / "cpu.max", "20000 100000\n")  # a parent's limit binds too
    assert cgroup_quota(proc, root) == pytest.approx(0.2)


def test_v1_quota_and_no_quota(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    _write(proc, "5:memory:/x\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    root = tmp_path / "sys"
    group = root / "cpu,cpuacct" / "docker" / "abc"
    _write(group / "cpu.cfs_quota_us", "40000\n")
    _write(group / "cpu.cfs_period_us", "100000\n")
    _write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_quota(proc, root) == pytest.approx(0.4)
    _write(group / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_quota(proc, root) is None
    assert cpu_allowance(proc, root) == len(os.sched_getaffinity(0))
    assert cgroup_quota(tmp_path / "missing", root) is None


def test_threads_never_exceed_the_share_rounded_up() -> None:
    assert thread_count(2, 0.3) == 1
    assert thread_count(2, 1.0) == 1
    assert thread_count(2, 1.5) == 2
    assert thread_count(2, 8.0) == 2
    assert thread_count(4, 2.0) == 2
    assert thread_count(1, 0.05) == 1


def test_a_process_started_in_a_quota_group_reads_its_quota() -> None:
    """The real thing: a cgroup held to 0.3 CPU (root needed), a Python process started in it."""
    code = "from bot.cpu_share import cpu_allowance; print(cpu_allowance())"
    try:
        with CpuGroup(f"fabulist-test-{os.getpid()}", 0.3) as group:
            out = subprocess.run(
                group.command([sys.executable, "-c", code]),
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            ).stdout
    except (QuotaUnavailable, PermissionError, OSError) as exc:
        pytest.skip(f"no CPU quota group here: {exc}")
    assert float(out) == pytest.approx(0.3)
