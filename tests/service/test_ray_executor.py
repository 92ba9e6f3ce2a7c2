"""Ray-specific faults the shared service suite cannot show (it runs on a healthy cluster)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ray_cluster import TEST_ENV, free_port

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]

# A fresh process: Ray's connection is per process, and this one may hold the tests' cluster.
UNREACHABLE = """
import asyncio, sys, time
from bot.core.executor import TrainingTask
from bot.executors.ray_cluster import RaySettings, RayTrainingExecutor

async def probe(lags):
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(0.01)
        lags.append(loop.time() - start - 0.01)

async def main():
    lags = []
    probing = asyncio.create_task(probe(lags))
    executor = RayTrainingExecutor(
        RaySettings(address=sys.argv[1], connect_wait_seconds=3.0)
    )
    began = time.monotonic()
    await executor.start()
    started = time.monotonic() - began
    run = executor.submit(TrainingTask(1, ("the cat and the mouse .",), {}, {}, None))
    outcome = await asyncio.wait_for(run.outcome(), 10)
    await executor.close()
    probing.cancel()
    print(f"started {started:.1f} lag {max(lags):.3f} samples {len(lags)}")
    print(f"outcome {outcome.state}: {outcome.error}")
    imported = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]
    print(f"imported {imported}")

asyncio.run(main())
"""


def test_an_unreachable_cluster_fails_trainings_at_once_and_the_bot_goes_on() -> None:
    # Nothing listens there: ray.init would retry for minutes; the bot must not wait for it.
    address = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", UNREACHABLE, address],
        cwd=REPO,
        env={**os.environ, **TEST_ENV},
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - began
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "outcome failed: The training cluster cannot be reached" in out, out
    started = float(out.split("started ")[1].split()[0])
    assert started < 10, out  # connect_wait_seconds is 3: start returns, the connect goes on
    assert "samples 0" not in out, out  # the loop kept running while Ray tried to connect
    assert "imported []" in out, out  # the bot process never imports TensorFlow
    assert elapsed < 90, f"exit took {elapsed:.0f} s"


LOST = """
import asyncio, tempfile, time
from pathlib import Path
from bot.core.executor import TrainingTask
from bot.executors.ray_cluster import RaySettings, RayTrainingExecutor
from tests.ray_cluster import ray_head
from tests.support import long_story

async def main():
    with ray_head(Path(tempfile.mkdtemp(prefix="fray", dir="/tmp"))) as head:
        executor = RayTrainingExecutor(RaySettings(address=head.address))
        await executor.start()
        seen = []
        model = {"units": 32, "embedding_dim": 16}
        story = long_story(20_000).decode()
        task = TrainingTask(1, (story,), model, {"max_seconds": 60.0})
        running = executor.submit(task, seen.append)
        while not seen:
            await asyncio.sleep(0.1)
        head.kill()
        lost = await asyncio.wait_for(running.outcome(), 60)
        print(f"lost {lost.state}: {lost.error}")
        began = time.monotonic()
        refused = executor.submit(TrainingTask(2, ("the cat and the mouse .",), {}, {}))
        outcome = await asyncio.wait_for(refused.outcome(), 30)
        print(f"refused {outcome.state} after {time.monotonic() - began:.0f} s: {outcome.error}")
        await executor.close()

asyncio.run(main())
"""


def test_a_lost_cluster_fails_the_running_and_the_new_trainings_clearly() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOST],
        cwd=REPO,
        env={**os.environ, **TEST_ENV},
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    # The task's own error (its node died) or the board's silence, whichever is seen first.
    assert "lost failed: The connection to the training cluster was lost" in out or (
        "lost failed: The training stopped unexpectedly (the machine running it left" in out
    ), out
    assert "refused failed" in out and "cannot be reached" in out, out


# Ray kills the processes of a cluster it starts (GCS, raylet) when the *thread* that started them
# ends (PR_SET_PDEATHSIG); the executor connects from a thread, which must outlive the cluster.
LOCAL_CLUSTER = """
import time
import ray
from bot.executors.ray_cluster import RaySettings, RayTrainingExecutor

executor = RayTrainingExecutor(RaySettings(
    max_concurrent_jobs=1, local_cpus=1, local_object_store_bytes=100 * 1024 * 1024))
executor.prepare()
time.sleep(3)
node = ray._private.worker._global_node
dead = [name for name, infos in node.all_processes.items()
        for info in infos if info.process.poll() is not None]
print("dead:", ",".join(dead) or "none", flush=True)
executor.close_sync()
"""


def test_a_local_cluster_outlives_the_thread_that_started_it() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOCAL_CLUSTER],
        cwd=str(REPO),
        env={**os.environ, **TEST_ENV},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert "dead: none" in result.stdout, result.stdout + result.stderr[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]
