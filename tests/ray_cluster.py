"""Real Ray clusters for the tests: a ``ray start`` head node on 127.0.0.1.

It is small (2 CPUs, no dashboard, a 200 MB object store) because the machine is shared, and torn
down by its fixture. A ``ray start`` head runs in its own session so the teardown
kills exactly its process group (raylet, GCS, its workers), never another Ray on the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

OBJECT_STORE_BYTES = 200 * 1024 * 1024
NUM_CPUS = 2
# A test cluster listens on 127.0.0.1 only; Ray's token authentication is for real clusters.
# Nor does it start idle workers for a driver ahead of its tasks: on the shared 2 cores each such
# worker imports Ray for nothing (bench/RESULTS.md, "Test suite", 2026-12-08).
TEST_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_prestart_worker_first_driver": "0",
}
# A head starts as an operator's shell starts it, with SIGINT at its default. A suite started as a
# background job (`make test &`, nohup, some CI runners) ignores SIGINT, every process it starts
# inherits that, and Ray's workers then ignore the interrupt ``ray.cancel`` sends them
# (``_thread.interrupt_main`` does nothing where SIGINT is ignored): in such full-suite runs
# (2026-12-07) 0 of 10 cancels landed; in the foreground, the first one lands.
WITH_DEFAULT_INTERRUPT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


@dataclass
class RayHead:
    address: str  # "127.0.0.1:port", for [workers] ray_address
    process: subprocess.Popen[bytes]
    temp_dir: Path

    def processes(self) -> list[tuple[int, str]]:
        """(pid, command line) of every process of this cluster: its session (Ray workers get
        their own process groups, but stay in the session of ``ray start``)."""
        listing = subprocess.run(
            ["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True, check=True
        ).stdout
        found = []
        for line in listing.splitlines():
            pid, sid, *args = line.split(None, 2)
            if int(sid) == self.process.pid:
                found.append((int(pid), args[0] if args else ""))
        return found

    def kill(self) -> None:
        """SIGKILL the whole cluster (it is gone, as if its machine died)."""
        for pid, _ in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def free_port() -> int:
    # The ephemeral range: outside Ray's default worker ports (10002-19999).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def ray_head(
    temp_dir: Path, *, port: int | None = None, timeout: float = 90.0
) -> Iterator[RayHead]:
    """``ray start --head --block`` on 127.0.0.1 in its own session; killed on exit.

    ``port``: a fixed one (a cluster restarted where a killed one was); a free one by default.
    """
    port = port or free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    temp_dir.mkdir(parents=True, exist_ok=True)
    log = (temp_dir / "ray-start.log").open("wb")
    process = subprocess.Popen(
        [
            *WITH_DEFAULT_INTERRUPT,
            str(ray_cli),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={NUM_CPUS}",
            "--num-gpus=0",
            "--include-dashboard=false",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        env={**os.environ, **TEST_ENV},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    head = RayHead(f"127.0.0.1:{port}", process, temp_dir)
    try:
        deadline = time.monotonic() + timeout
        while not _accepts(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "ray start failed: " + (temp_dir / "ray-start.log").read_text()[-2000:]
                )
            time.sleep(0.2)
        yield head
    finally:
        head.kill()
        log.close()


@contextlib.contextmanager
def ray_head_in_temp_dir(*, port: int | None = None) -> Iterator[RayHead]:
    """:func:`ray_head` in a fresh folder under /tmp, removed afterwards (a short path: Ray's
    socket paths under it must stay below the 107-byte limit)."""
    temp_dir = Path(tempfile.mkdtemp(prefix="fray", dir="/tmp"))
    try:
        with ray_head(temp_dir, port=port) as head:
            yield head
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0
