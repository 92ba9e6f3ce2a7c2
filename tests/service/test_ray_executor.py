"""Ray-specific faults the shared service suite cannot show (it runs on a healthy cluster), and
what the Ray driver process spares the bot process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.core.api import ContinueOptions, JobProgress, TrainOptions
from bot.core.service import StoryService
from bot.executors.ray_cluster import RaySettings, RayTrainingExecutor
from bot.store.sqlite import SqliteStoryStore as StoryStore
from tests.ray_cluster import TEST_ENV, RayHead, free_port, process_alive
from tests.service.conftest import ADMIN, STORY, channel, long_story, tiny_config

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]


def _python(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh Python process from the repository, with the tests' Ray env."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env={**os.environ, **TEST_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
    imported = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "ray")]
    print(f"imported {imported}")

asyncio.run(main())
"""


def test_an_unreachable_cluster_fails_trainings_at_once_and_the_bot_goes_on() -> None:
    # Nothing listens there: ray.init would retry for minutes; the bot must not wait for it.
    address = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    done = _python(UNREACHABLE, address, timeout=120)
    elapsed = time.monotonic() - began
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "outcome failed: The training cluster cannot be reached" in out, out
    started = float(out.split("started ")[1].split()[0])
    assert started < 10, out  # connect_wait_seconds is 3: start returns, the connect goes on
    assert "samples 0" not in out, out  # the loop kept running while Ray tried to connect
    assert "imported []" in out, out  # the bot process never imports TensorFlow nor Ray
    assert elapsed < 90, f"exit took {elapsed:.0f} s"


# A bot-like process: a lost cluster, then the same address restarted. The lag probe samples the
# loop throughout; ray.init (GIL-bound for 1-2 s) runs in the driver process, never in this one.
LOST = """
import asyncio, sys, time
from pathlib import Path
from bot.core.executor import TrainingTask
from bot.executors.ray_cluster import RaySettings, RayTrainingExecutor
from tests.ray_cluster import ray_head_in_temp_dir
from tests.support import long_story

async def probe(lags):
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(0.01)
        lags.append((time.monotonic(), loop.time() - start - 0.01))

def started(port):  # ray start blocks: a thread of its own
    head = ray_head_in_temp_dir(port=port)
    return head, head.__enter__()

async def main():
    lags = []
    probing = asyncio.create_task(probe(lags))
    holder, head = await asyncio.to_thread(started, None)
    executor = RayTrainingExecutor(RaySettings(address=head.address))
    await executor.start()
    seen = []
    model = {"units": 32, "embedding_dim": 16}
    story = long_story(20_000).decode()
    task = TrainingTask(1, (story,), model, {"max_seconds": 60.0})
    running = executor.submit(task, seen.append)
    while not seen:
        await asyncio.sleep(0.1)
    await asyncio.to_thread(holder.__exit__, None, None, None)  # kills the whole cluster
    lost = await asyncio.wait_for(running.outcome(), 60)
    print(f"lost {lost.state}: {lost.error}")
    began = time.monotonic()
    refused = executor.submit(TrainingTask(2, ("the cat and the mouse .",), {}, {}))
    outcome = await asyncio.wait_for(refused.outcome(), 30)
    print(f"refused {outcome.state} after {time.monotonic() - began:.0f} s: {outcome.error}")
    # The same address again: the driver reconnects in the background.
    holder, head = await asyncio.to_thread(started, int(head.address.rpartition(":")[2]))
    restarted = time.monotonic()
    small = {"units": 16, "embedding_dim": 8}
    article = Path("data/belling-the-cat.txt").read_text()
    for job_id in range(3, 40):
        again = executor.submit(TrainingTask(job_id, (article,), small, {"max_seconds": 10.0}))
        outcome = await asyncio.wait_for(again.outcome(), 120)
        if outcome.state == "done" or time.monotonic() - restarted > 150:
            break
        await asyncio.sleep(3)
    print(f"after the restart {outcome.state}: {outcome.error}")
    window = [lag for at, lag in lags if at >= restarted]
    print(f"reconnect lag max {max(window) * 1000:.0f} ms over {len(window)} samples")
    await executor.close()
    await asyncio.to_thread(holder.__exit__, None, None, None)
    probing.cancel()
    print("ray imported:", "ray" in sys.modules or "ray._raylet" in sys.modules)

asyncio.run(main())
"""


def test_a_lost_cluster_fails_trainings_clearly_and_the_driver_rejoins_it_off_the_bot() -> None:
    done = _python(LOST, timeout=420)
    out = done.stdout
    print(out)  # the reconnect's loop lag, for the record (-s shows it)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    # The task's own error (its node died) or the board's silence, whichever is seen first.
    assert "lost failed: The connection to the training cluster was lost" in out or (
        "lost failed: The training stopped unexpectedly (the machine running it left" in out
    ), out
    assert "refused failed" in out and "cannot be reached" in out, out
    assert "after the restart done" in out, out
    samples = int(out.split(" ms over ")[1].split()[0])
    assert samples > 100, out  # the loop kept running through the reconnect
    # What makes the reconnect harmless: ray.init never ran in this process.
    assert "ray imported: False" in out, out


# A cluster the executor starts itself (no address) is started by its driver process. Ray kills
# the processes of such a cluster (GCS, raylet) when the *thread* that started them ends
# (PR_SET_PDEATHSIG): the driver connects from a thread, which must outlive the cluster. When the
# driver process dies the cluster goes with it, and the next driver starts a new one.
LOCAL_CLUSTER = """
import os, signal, subprocess, sys, time
from bot.executors.ray_cluster import RaySettings, RayTrainingExecutor
from tests.ray_cluster import process_alive as alive

def descendants(root):
    rows = subprocess.run(["ps", "-eo", "pid=,ppid=,stat=,comm="], capture_output=True,
                          text=True, check=True).stdout.split("\\n")
    table = [row.split(None, 3) for row in rows if row.strip()]
    found, frontier = {}, {root}
    while frontier:
        children = {int(r[0]): r for r in table if int(r[1]) in frontier and "Z" not in r[2]}
        frontier = set(children) - set(found)
        found.update({pid: children[pid][3] for pid in frontier})
    return found

def gone(pids, seconds):
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            print("still alive:", {pid: pids[pid] for pid in pids if alive(pid)}, flush=True)
            return False
        time.sleep(0.2)
    return True

def until(check, seconds):
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.2)
    return check()

executor = RayTrainingExecutor(RaySettings(
    max_concurrent_jobs=1, local_cpus=1, local_object_store_bytes=100 * 1024 * 1024))
executor.prepare()
time.sleep(3)
first = executor.driver_pid
cluster = descendants(first)
print("connected:", executor.connected, flush=True)
print("cluster:", ",".join(sorted(set(cluster.values()))), flush=True)
print("ray in the bot:", "ray" in sys.modules, flush=True)
os.kill(first, signal.SIGKILL)
print("old cluster gone:", gone(cluster, 60), flush=True)
until(lambda: executor.driver_pid not in (None, first) and executor.connected, 180)
second = executor.driver_pid
print("new driver:", second not in (None, first), "connected:", executor.connected, flush=True)
new_cluster = descendants(second)
print("new cluster:", ",".join(sorted(set(new_cluster.values()))), flush=True)
executor.close_sync()
print("closed clean:", gone({second: "driver", **new_cluster}, 60), flush=True)
"""


def test_a_local_cluster_lives_and_dies_with_the_driver_process() -> None:
    result = _python(LOCAL_CLUSTER, timeout=400)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr[-3000:]
    assert "connected: True" in out, out + result.stderr[-3000:]
    # The cluster's processes outlived the connecting thread's first seconds.
    cluster = out.split("cluster: ")[1].split("\n")[0]
    assert "gcs_server" in cluster and "raylet" in cluster, out
    assert "ray in the bot: False" in out, out
    assert "old cluster gone: True" in out, out + result.stderr[-3000:]
    assert "new driver: True connected: True" in out, out + result.stderr[-3000:]
    assert "closed clean: True" in out, out + result.stderr[-3000:]


async def test_a_killed_driver_process_fails_its_training_and_a_new_driver_takes_the_next(
    ray_cluster: RayHead, tmp_path: Path
) -> None:
    config = tiny_config(tmp_path)
    store = await StoryStore.open(config.storage.database)
    executor = RayTrainingExecutor(RaySettings(address=ray_cluster.address))
    await executor.start()
    service = StoryService(config, store, executor=executor)
    await service.start(warm_workers=False)
    try:
        first = await service.train(channel(1), ADMIN, "belling.txt", STORY, TrainOptions(seed=1))
        assert (await service.wait_for_job(first.job_id)).state == "done"
        seen: list[JobProgress] = []
        job = await service.train(
            channel(1), ADMIN, "long.txt", long_story(), TrainOptions(max_seconds=30), seen.append
        )
        for _ in range(1200):
            if any(p.state == "running" and p.epoch >= 1 for p in seen):
                break
            await asyncio.sleep(0.05)
        old = executor.driver_pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        result = await asyncio.wait_for(service.wait_for_job(job.job_id), 60)
        assert result.state == "failed" and result.error is not None
        assert "Ray driver process ended (it was killed by SIGKILL)" in result.error, result.error
        assert "previous model is still active" in result.error, result.error
        # The previous model still answers.
        reply = await service.continue_story(
            channel(1), "had a general", ContinueOptions(length=3, temperature=0.0)
        )
        assert reply.model_version == 1 and reply.symbols == ["council", "to", "consider"]
        # A new driver process serves the next training.
        again = await service.train(channel(2), ADMIN, "belling.txt", STORY, TrainOptions(seed=1))
        assert (await asyncio.wait_for(service.wait_for_job(again.job_id), 180)).state == "done"
        new = executor.driver_pid
        assert new is not None and new != old and executor.driver_restarts == 1
    finally:
        await service.close()
        await executor.close()
        await store.close()
    assert not process_alive(old) and not process_alive(new)  # no orphan driver process


# ray.cancel interrupts the worker's main thread (not a signal: Ray's workers block SIGINT). An
# interrupt that arrives as a task ends can land in the next task of that worker: CI once saw a
# training nobody cancelled end "cancelled". Here a real ray.cancel that the monitor did not ask
# for stands in for such a stray interrupt.
STRAY_INTERRUPT = """
import sys, time
import ray
from bot.executors.ray_cluster import RaySettings
from bot.executors.ray_cluster.connection import RayConnection
from bot.executors.ray_cluster.task_monitor import TaskMonitor
from tests.support import long_story

connection = RayConnection(RaySettings(address=sys.argv[1]))
assert connection.connect()
sent = []
monitor = TaskMonitor(connection, sent.append)
story = long_story().decode()

def train(job_id, interrupts):
    monitor.submit({"job_id": job_id, "texts": [story], "model": {"units": 16, "embedding_dim": 16},
                    # no early stop, and time to spare on a busy machine: the task is still
                    # training when the interrupt comes (its epochs slow down on a busy machine
                    # as the interrupts do); a task that is not interrupted ends after 20 epochs
                    "training": {"max_seconds": 30.0, "max_epochs": 20, "patience": None},
                    "vocabulary_max_size": None})
    # starts: how often a task of the job began (a second start is the monitor's resubmission);
    # landed: interrupts that ended a task. Ray's cancel is best effort: one that a task outlives
    # by 3 s did not land, and is sent again.
    starts, landed, sent_at, deadline = 0, 0, None, time.monotonic() + 240
    while time.monotonic() < deadline:
        monitor.collect()
        messages, sent[:] = list(sent), []
        for message in messages:
            if message[0] == "started" and message[1] == job_id:
                starts += 1
                if sent_at is not None:
                    landed, sent_at = landed + 1, None
            # The first report of training steps (every 2 s, mid-epoch too): the task trains.
            progress = message[2] if message[0] == "progress" and message[1] == job_id else None
            if progress and (progress["epoch"] >= 1 or progress["step"] >= 1) and starts:
                waited = sent_at is not None and time.monotonic() - sent_at > 3.0
                if landed < interrupts and (sent_at is None or waited):
                    ray.cancel(monitor._refs[job_id])  # not monitor.cancel: nobody asked
                    sent_at = time.monotonic()
            if message[0] == "outcome" and message[1].job_id == job_id:
                outcome = message[1]
                if sent_at is not None and outcome.state != "done":
                    landed += 1
                print(f"job {job_id}: {landed} interrupts, {starts} starts, "
                      f"{outcome.state}: {outcome.error}")
                return
    print(f"job {job_id}: no outcome")

train(1, 1)
train(2, 2)
connection.disconnect()
"""


def test_an_interrupt_nobody_asked_for_trains_again_and_a_second_one_fails_clearly(
    ray_cluster: RayHead,
) -> None:
    done = _python(STRAY_INTERRUPT, ray_cluster.address, timeout=600)
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    # The interrupt stopped the first task; submitted again, the job trains to the end.
    assert "job 1: 1 interrupts, 2 starts, done: None" in out, out + done.stderr[-3000:]
    # A second is not called a cancel either: it fails, saying what happened.
    assert "job 2: 2 interrupts, 2 starts, failed: The training was interrupted on the " in (out), (
        out + done.stderr[-3000:]
    )
