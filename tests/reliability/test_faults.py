"""Faults injected into real processes: committed stories and models survive.

- SIGKILL of the training worker mid-epoch, three times in a row, then a normal training.
- SIGKILL of the whole offline bot (``python -m bot train``, process group: bot + worker)
  mid-training and around the commit of the new model, then a restart.
- SIGKILL of a process committing model versions through the real ``StoryStore`` in a tight
  loop (``commit_loop.py``), at random moments, so most kills land inside the commit.
- A read-only and a full database (``PRAGMA query_only`` / ``max_page_count``: portable, and
  root ignores file modes).

After every crash: ``PRAGMA integrity_check`` is ok, every committed story and model is there,
the active model is wholly the old or wholly the new one (its blob loads and matches its row),
and open jobs are marked interrupted on restart.
"""

# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, StorageConfig, load_config
from bot.core.api import (
    ChannelRef,
    ContinueOptions,
    JobProgress,
    Member,
    TrainOptions,
    console_channel,
)
from bot.core.service import StoryService
from bot.core.store import JobRecord
from bot.core.store import StoryStore as CoreStore
from bot.errors import UserError
from bot.executors.local import TrainingPool
from bot.store.sqlite import SqliteStoryStore as StoryStore
from model import from_bytes
from tests.reliability.conftest import REPO, STORY, Ledger, snapshot
from tests.reliability.helpers import friendly, seed_model
from tests.service.conftest import long_story

pytestmark = pytest.mark.slow

ADMIN = Member(user_id=1, display_name="admin", is_admin=True)
TINY = {"units": 16, "embedding_dim": 16, "max_epochs": 300, "max_seconds": 60.0}
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
ENV.pop("DISCORD_TOKEN", None)


def _config(db: Path, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "storage": {"database": str(db)},
        "training": dict(TINY),
        "cooldowns": {"continue_seconds": 0.0},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return load_config(data=data, environ={})


def _check_active_model(db: Path) -> list[tuple[int, int]]:
    """Every channel's active model is one whole row: blob loads, vocabulary and config match.

    Returns (channel id, active version) pairs.
    """
    out = []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT c.channel_id, m.version, m.blob, m.vocabulary, m.config FROM channels c "
            "JOIN models m ON m.id = c.active_model_id"
        ).fetchall()
        dangling = conn.execute(
            "SELECT count(*) FROM channels WHERE active_model_id IS NOT NULL "
            "AND active_model_id NOT IN (SELECT id FROM models)"
        ).fetchone()[0]
    conn.close()
    assert dangling == 0, "a channel points at a model that does not exist"
    for channel_id, version, blob, vocabulary, config in rows:
        model = from_bytes(bytes(blob))
        assert list(model.vocabulary.symbols) == json.loads(vocabulary), "blob/row mismatch"
        assert model.config.to_dict() == json.loads(config), "blob/row config mismatch"
        if model.vocabulary.symbols[0].startswith("version"):
            assert model.vocabulary.symbols[0] == f"version{version}", "a mix of versions"
        out.append((channel_id, version))
    return out


async def _restart(db: Path) -> tuple[list[str], str]:
    """Open the database as a restarting bot does; returns the states of all jobs after it."""
    store = await StoryStore.open(db)
    service = StoryService(_config(db), store, TrainingPool(1))
    try:
        await service.start(warm_workers=False)
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            states = [r[0] for r in conn.execute("SELECT state FROM jobs ORDER BY id")]
        conn.close()
        check = await store.integrity_check()
    finally:
        await service.close()
        await store.close()
    return states, check


# -- the training worker -----------------------------------------------------------------------


async def _wait_epoch(progress: list[JobProgress], job_id: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.job_id == job_id and p.state == "running" and p.epoch >= 1 for p in progress):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no training epoch was reported")


async def test_worker_sigkill_mid_epoch_repeated(tmp_path: Path, ledger: Ledger) -> None:
    db = tmp_path / "fabulist.sqlite3"
    config = _config(db)
    store = await StoryStore.open(db)
    pool = TrainingPool(1)
    service = StoryService(config, store, executor=pool)
    await service.start()
    channel = ChannelRef(100, 1, "story")
    try:
        old_model, _ = await seed_model(store, 1, STORY.decode())
        for round_ in range(3):
            seen: list[JobProgress] = []
            job = await service.train(
                channel,
                ADMIN,
                "long.txt",
                long_story(20_000, seed=round_),
                TrainOptions(max_seconds=30),
                seen.append,
            )
            await _wait_epoch(seen, job.job_id)
            pid = pool.pid_for_job(job.job_id)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            result = await service.wait_for_job(job.job_id)
            reply = await service.continue_story(channel, "had a general", ContinueOptions())
            ok = (
                result.state == "failed"
                and result.error is not None
                and "killed by SIGKILL" in result.error
                and "previous model is still active" in result.error
                and await store.active_model_id(1) == old_model
                and reply.model_version == 1
                and await store.integrity_check() == "ok"
            )
            ledger.record("faults", ok, f"worker SIGKILL round {round_}: {result}")
            assert ok, result
        # The replacement worker trains normally.
        job = await service.train(channel, ADMIN, "story.txt", STORY, TrainOptions(seed=1))
        result = await service.wait_for_job(job.job_id)
        assert result.state == "done" and result.model_version == 2, result
        assert pool.restarts >= 3
    finally:
        await service.close()
        await pool.close()
        await store.close()


# -- the whole offline bot (python -m bot train) -----------------------------------------------


def _write_config(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "fabulist.toml"
    lines = [f'[storage]\ndatabase = "{db}"', "[training]"]
    lines += [f"{k} = {v!r}" for k, v in TINY.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _job_rows(db: Path) -> list[tuple[int, str, str | None]]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05) as conn:
            rows = conn.execute("SELECT id, state, progress FROM jobs ORDER BY id").fetchall()
        conn.close()
        return rows
    except sqlite3.OperationalError:
        return []


async def _spawn_train(config: Path, story: Path, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--config",
        str(config),
        "train",
        str(story),
        "--channel",
        "crash",
        *extra,
        cwd=str(REPO),
        env=ENV,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _until(predicate: Any, timeout: float, step: float = 0.005) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(step)
    raise AssertionError("timed out")


async def _seeded_db(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    db = tmp_path / "crash.sqlite3"
    store = await StoryStore.open(db)
    await seed_model(store, console_channel("crash").channel_id, STORY.decode(), guild_id=None)
    await store.close()
    return db, snapshot(db)


def _committed_survive(db: Path, before: dict[str, Any]) -> bool:
    """Every kept model of ``before`` is still there, byte for byte, and so is every story of
    ``before`` that a stored model learned.

    Stories no kept model learned (those of interrupted jobs) are pruned at the next commit by
    design (docs/operators.md, "Kept versions"), so they are not required to survive.
    """
    after = snapshot(db)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        learned = {row[0] for row in conn.execute("SELECT story_id FROM model_stories")}
    conn.close()
    needed = {story for story in before["stories"] if story[0] in learned}
    # Versions beyond storage.model_versions_kept are pruned oldest first, also by design.
    gone = set(before["models"]) - set(after["models"])
    kept = StorageConfig().model_versions_kept
    oldest_kept = min((version for _, version, _ in after["models"]), default=0)
    models_ok = len(after["models"]) >= min(kept, len(before["models"])) and all(
        version < oldest_kept for _, version, _ in gone
    )
    return needed <= set(after["stories"]) and models_ok


async def _training_started(db: Path, jobs_before: int, timeout: float = 120.0) -> float:
    """Monotonic time the new job's training began, from its first saved progress."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _job_rows(db)
        if len(rows) > jobs_before and rows[-1][2]:
            now = time.monotonic()
            return now - float(json.loads(rows[-1][2])["elapsed_seconds"])
        await asyncio.sleep(0.01)
    raise AssertionError("the training never reported progress")


async def test_bot_sigkill_mid_training_and_around_commit(tmp_path: Path, ledger: Ledger) -> None:
    """Kill ``python -m bot train`` (bot and worker) at offsets around its model's commit.

    A 2 s time-limited training commits at a predictable moment after it starts. One
    undisturbed run measures that moment; then each run is killed at a random offset from 0.8 s
    before to 0.15 s after it: mid-training, inside the commit, or just after it.
    """
    db, seeded = await _seeded_db(tmp_path)
    config = _write_config(tmp_path, db)
    story = tmp_path / "long.txt"
    story.write_bytes(long_story(4_000))
    args = ("--max-seconds", "2", "--seed", "1")

    jobs_before = len(_job_rows(db))
    proc = await _spawn_train(config, story, *args)
    started = await _training_started(db, jobs_before)
    await _until(lambda: _job_rows(db)[-1][1] == "done", 120.0)
    commit_offset = time.monotonic() - started
    await proc.wait()
    assert [v for _, v in _check_active_model(db)] == [2]
    committed = snapshot(db)
    assert _committed_survive(db, seeded)

    rng = random.Random(5)
    outcomes: list[str] = []
    for _ in range(4):
        offset = commit_offset + rng.uniform(-0.8, 0.15)
        jobs_before = len(_job_rows(db))
        proc = await _spawn_train(config, story, *args)
        try:
            started = await _training_started(db, jobs_before)
            await asyncio.sleep(max(0.0, started + offset - time.monotonic()))
        finally:
            _kill_group(proc)
            await proc.wait()
        states, check = await _restart(db)
        versions = [v for _, v in _check_active_model(db)]
        latest = max(m[1] for m in snapshot(db)["models"])
        ok = (
            check == "ok"
            and states[-1] in ("interrupted", "done")
            and "queued" not in states
            and "running" not in states
            and _committed_survive(db, committed)
            and versions == [latest]
        )
        outcomes.append(f"{offset - commit_offset:+.2f}s->{states[-1]}")
        ledger.record("faults", ok, f"bot SIGKILL at {offset:.2f}s: {states[-1]} {versions}")
        assert ok, (check, states, versions)
        committed = snapshot(db)
    ledger.figure(
        f"faults: bot SIGKILLed around its commit (at {commit_offset:.2f} s into training): "
        + ", ".join(outcomes)
    )


# -- the commit itself, many times -------------------------------------------------------------


async def test_sigkill_inside_model_commits(tmp_path: Path, ledger: Ledger) -> None:
    db = tmp_path / "commits.sqlite3"
    channel_id = 7
    rng = random.Random(11)
    committed: dict[int, str] = {}
    in_commit = 0.0
    loop_time = 0.0
    kills = 16
    # The highest version known to be committed: reported by a victim, or found active after a
    # kill. A kill between a commit's return and its report leaves one unreported version, and
    # the next victim builds on it: so each round may add at most one unreported version.
    known = 0
    for _ in range(kills):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.reliability.commit_loop",
            str(db),
            str(channel_id),
            "8000",
            cwd=str(REPO),
            env=ENV,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
        await asyncio.sleep(rng.uniform(0.02, 0.35))
        proc.kill()
        out = (await proc.stdout.read()).decode()
        await proc.wait()
        for line in out.splitlines():
            _, version, sha, commit_s, total_s = line.split()
            committed[int(version)] = sha
            in_commit += float(commit_s)
            loop_time += float(total_s)
        states, check = await _restart(db)
        active = _check_active_model(db)
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            kept = {
                v: hashlib.sha256(b).hexdigest()
                for v, b in conn.execute(
                    "SELECT version, blob FROM models WHERE channel_id = ?", (channel_id,)
                )
            }
        conn.close()
        last = max(committed) if committed else 0
        active_version = active[0][1] if active else 0
        known = max(known, last)
        expected = {v: sha for v, sha in committed.items() if v > active_version - 3}
        ok = (
            check == "ok"
            and all(kept.get(v) == sha for v, sha in expected.items())
            and active_version in (known, known + 1)
            and active_version == max(kept, default=0)
            and "queued" not in states
            and "running" not in states
        )
        ledger.record("faults", ok, f"SIGKILL in commit loop: last {last}, active {active}")
        assert ok, (check, expected.keys(), kept.keys(), active, last, known)
        known = max(known, active_version)
    share = in_commit / loop_time if loop_time else 0.0
    ledger.figure(
        f"faults: {kills} SIGKILLs of a process committing models: {len(committed)} versions "
        f"committed, {share:.0%} of its time inside activate_model"
    )


# -- read-only and full disk -------------------------------------------------------------------


@pytest.fixture
async def disk(tmp_path: Path) -> AsyncIterator[tuple[StoryService, StoryStore, Path]]:
    db = tmp_path / "disk.sqlite3"
    store = await StoryStore.open(db)
    await seed_model(store, 1, STORY.decode())
    pool = TrainingPool(1)
    service = StoryService(_config(db), store, executor=pool)
    await service.start(warm_workers=False)
    yield service, store, db
    await service.close()
    await pool.close()
    await store.close()


async def test_read_only_database(
    disk: tuple[StoryService, StoryStore, Path], ledger: Ledger
) -> None:
    service, store, db = disk
    before = snapshot(db)
    await store._db.execute("PRAGMA query_only = 1")  # the OS-level equivalent needs non-root
    channel = ChannelRef(100, 2, "other")
    message = ""
    try:
        await service.train(channel, ADMIN, "s.txt", STORY, TrainOptions())
    except UserError as exc:
        message = exc.message
    except Exception as exc:
        message = f"BUG {exc!r}"
    # Reading still works: the old model answers.
    reply = await service.continue_story(ChannelRef(100, 1), "had a general", ContinueOptions())
    await store._db.execute("PRAGMA query_only = 0")
    ok = friendly(message) and snapshot(db) == before and reply.model_version == 1
    ledger.record("faults", ok, f"read-only database: {message!r}")
    assert ok, message


async def test_full_disk_during_upload_and_commit(
    disk: tuple[StoryService, StoryStore, Path], ledger: Ledger
) -> None:
    service, store, db = disk
    before = snapshot(db)
    pages = await store._scalar("PRAGMA page_count")
    await store._db.execute(f"PRAGMA max_page_count = {int(pages)}")
    channel = ChannelRef(100, 2, "other")
    message = ""
    try:
        await service.train(channel, ADMIN, "s.txt", long_story(20_000), TrainOptions())
    except UserError as exc:
        message = exc.message
    except Exception as exc:
        message = f"BUG {exc!r}"
    ok = friendly(message) and snapshot(db) == before
    ledger.record("faults", ok, f"full disk on upload: {message!r}")
    assert ok, message

    # A training that finishes while the disk is full: the job fails clearly, the old model stays.
    await store._db.execute("PRAGMA max_page_count = 1073741823")
    job = await service.train(ChannelRef(100, 1), ADMIN, "s.txt", STORY, TrainOptions(seed=1))
    pages = await store._scalar("PRAGMA page_count")
    await store._db.execute(f"PRAGMA max_page_count = {int(pages)}")
    result = await service.wait_for_job(job.job_id)
    await store._db.execute("PRAGMA max_page_count = 1073741823")
    record = await recorded_end(store, job.job_id)
    ok = (
        result.state == "failed"
        and result.error is not None
        and friendly(result.error)
        and record is not None
        and record.state == "failed"
        and await store.active_model_id(1) is not None
        and [v for _, v in _check_active_model(db)] == [1]
        and await store.integrity_check() == "ok"
    )
    ledger.record("faults", ok, f"full disk at commit: {result.error!r}")
    assert ok, (result, record)


async def recorded_end(store: CoreStore, job_id: int, timeout: float = 30.0) -> JobRecord | None:
    """The job's row once it has an end: the store may refuse the end first ("keeps trying")."""
    deadline = time.monotonic() + timeout
    record = await store.job(job_id)
    while record is not None and record.state == "running" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        record = await store.job(job_id)
    return record


async def test_a_job_end_the_store_refused_is_recorded_once_it_can(
    disk: tuple[StoryService, StoryStore, Path], ledger: Ledger
) -> None:
    service, store, _ = disk
    channel = ChannelRef(100, 1)
    seen: list[JobProgress] = []
    job = await service.train(
        channel, ADMIN, "long.txt", long_story(20_000), TrainOptions(max_seconds=30), seen.append
    )
    await _wait_epoch(seen, job.job_id)
    await store._db.execute("PRAGMA query_only = 1")
    await service.cancel(channel, ADMIN)
    result = await service.wait_for_job(job.job_id)
    refused = await store.job(job.job_id)
    await store._db.execute("PRAGMA query_only = 0")
    record = await recorded_end(store, job.job_id)
    ok = (
        result.state == "failed"
        and result.error is not None
        and friendly(result.error)
        and "keeps trying" in result.error
        and refused is not None
        and refused.state == "running"
        and record is not None
        and record.state == "failed"
        and await store.active_model_id(1) is not None
        and await store.integrity_check() == "ok"
    )
    ledger.record("faults", ok, f"job end refused, then recorded: {result.error!r}")
    assert ok, (result, refused, record)
