"""The storage faults that apply to PostgreSQL (issue 13), against a real server.

- SIGKILL of a process committing model versions (``commit_loop.py``) at random moments: after
  each, every committed version is there with its blob, the active model is the newest, the
  invariants hold, and the killed process's open job is found orphaned (its owner lock died with
  its connection) and interrupted by the next store, on any host.
- A lost connection mid-request and a read-only database: tests/service/test_postgres_store.py.
- A full disk, for real: the test's database lives in a tablespace on a small tmpfs mounted for
  the test (root only: CI runs as root; elsewhere the test is skipped and says why), filled up
  with a file. PostgreSQL then fails every write that needs a new page with its own disk-full
  error (SQLSTATE 53100, "could not extend file ... No space left on device"): an upload and a
  finished training's commit are refused with the clear "storage is full" message, the old
  model keeps answering, and no table changes by a byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pwd
import random
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from bot.config import load_config
from bot.core.api import ChannelRef, ContinueOptions, TrainOptions
from bot.core.service import StoryService
from bot.core.store import JobState
from bot.errors import UserError
from bot.executors.local import TrainingPool
from bot.store.postgres import PostgresStoryStore as PostgresStore
from model import from_bytes
from tests.postgres_server import TEMPLATE, PostgresServer
from tests.reliability.conftest import REPO, STORY, Ledger
from tests.reliability.helpers import friendly, seed_model
from tests.reliability.test_faults import ADMIN, ENV, TINY
from tests.service.conftest import long_story

pytestmark = pytest.mark.slow


async def _check(url: str, channel_id: int) -> tuple[dict[int, str], int, list[str]]:
    """(kept version -> blob sha256, active version, job states after a restart's clean-up)."""
    store = await PostgresStore.open(url)
    try:
        # what a restarting bot does first: the killed process's open job is orphaned
        for job in await store.orphaned_jobs():
            await store.finish_job(job.id, JobState.INTERRUPTED, "interrupted")
        assert await store.integrity_check() == "ok"
        active = await store.active_model(channel_id)
    finally:
        await store.close()
    connection = await asyncpg.connect(url)
    try:
        kept = {
            row["version"]: hashlib.sha256(row["blob"]).hexdigest()
            for row in await connection.fetch(
                "SELECT version, blob FROM models WHERE channel_id = $1", channel_id
            )
        }
        states = [r["state"] for r in await connection.fetch("SELECT state FROM jobs")]
        if active is not None:
            blob = await connection.fetchval("SELECT blob FROM models WHERE id = $1", active.id)
            model = from_bytes(bytes(blob))
            assert model.vocabulary.symbols[0] == f"version{active.version}", "a mix of versions"
    finally:
        await connection.close()
    return kept, 0 if active is None else active.version, states


async def test_sigkill_inside_model_commits_on_postgresql(
    postgres_url: str, ledger: Ledger
) -> None:
    channel_id = 7
    rng = random.Random(13)
    committed: dict[int, str] = {}
    kills = 6
    # The highest version known to be committed (reported, or found active after a kill): a
    # kill between a commit and its report leaves one unreported version per round at most.
    known = 0
    for _ in range(kills):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.reliability.commit_loop", postgres_url,
            str(channel_id), "8000", cwd=str(REPO), env=ENV, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        proc.kill()
        out = (await proc.stdout.read()).decode()
        await proc.wait()
        for line in out.splitlines():
            _, version, sha, _commit_s, _total_s = line.split()
            committed[int(version)] = sha
        kept, active, states = await _check(postgres_url, channel_id)
        last = max(committed) if committed else 0
        known = max(known, last)
        expected = {v: sha for v, sha in committed.items() if v > active - 3}
        ok = (
            all(kept.get(v) == sha for v, sha in expected.items())
            and active in (known, known + 1)
            and active == max(kept, default=0)
            and "queued" not in states
            and "running" not in states
        )
        ledger.record("faults", ok, f"PostgreSQL SIGKILL in commit loop: last {last}, {active}")
        assert ok, (expected.keys(), kept.keys(), active, last, known, states)
        known = max(known, active)
    ledger.figure(
        f"faults: {kills} SIGKILLs of a process committing models to PostgreSQL: "
        f"{len(committed)} versions committed, none lost or mixed"
    )


# -- full disk ---------------------------------------------------------------------------------

TABLESPACE = "fabulist_full_disk"
DISK_BYTES = 32 * 1024 * 1024


@contextlib.contextmanager
def small_disk() -> Iterator[Path]:
    """A 32 MiB tmpfs owned by the ``postgres`` user (the server's), unmounted on exit."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system for the full-disk test needs root")
    folder = Path(tempfile.mkdtemp(prefix="fabulist-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"this machine cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        entry = pwd.getpwnam("postgres")
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


def fill(disk: Path) -> Path:
    """Write zeros to ``disk`` until it is full; the filler file's path."""
    filler = disk / "filler"
    block = b"\0" * 65536
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):  # ENOSPC: full
        while True:
            out.write(block)
    return filler


DIGEST = "md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"


async def table_digests(url: str) -> dict[str, str]:
    """Every table's rows, digested: equal digests mean not a byte changed."""
    connection = await asyncpg.connect(url)
    try:
        tables = [
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        # the table names come from pg_tables, not from input
        queries = {table: f'SELECT {DIGEST} FROM "{table}" t' for table in tables}  # noqa: S608
        return {table: await connection.fetchval(query) for table, query in queries.items()}
    finally:
        await connection.close()


@pytest.fixture
async def full_disk_app(
    postgres_server: PostgresServer,
) -> AsyncIterator[tuple[StoryService, PostgresStore, str, Path]]:
    with small_disk() as disk:
        postgres_server.psql(f"CREATE TABLESPACE {TABLESPACE} LOCATION '{disk}'")
        url = postgres_server.create_database(template=None)
        name = url.rsplit("/", 1)[-1]
        postgres_server.psql(f"DROP DATABASE {name}")
        postgres_server.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} TABLESPACE {TABLESPACE}")
        config = load_config(
            data={
                "storage": {"url": url},
                "training": dict(TINY),
                "cooldowns": {"continue_seconds": 0.0},
            },
            environ={},
        )
        store = await PostgresStore.open(url)
        pool = TrainingPool(1)
        service = StoryService(config, store, executor=pool)
        try:
            await seed_model(store, 1, STORY.decode())
            await service.start(warm_workers=False)
            yield service, store, url, disk
        finally:
            await service.close()
            await pool.close()
            await store.close()
            postgres_server.drop_database(url)
            postgres_server.psql(f"DROP TABLESPACE IF EXISTS {TABLESPACE}")


async def test_full_disk_on_postgresql(
    full_disk_app: tuple[StoryService, PostgresStore, str, Path],
    postgres_server: PostgresServer,
    ledger: Ledger,
) -> None:
    service, store, url, disk = full_disk_app
    before = await table_digests(url)
    filler = fill(disk)
    # An upload on a full disk: refused clearly, nothing written.
    message = ""
    try:
        await service.train(ChannelRef(100, 2, "other"), ADMIN, "s.txt", long_story(20_000),
                            TrainOptions())  # fmt: skip
    except UserError as exc:
        message = exc.message
    except Exception as exc:
        message = f"BUG {exc!r}"
    after = await table_digests(url)
    # Reading still works: the old model answers (and counts its reply, a write in place).
    reply = await service.continue_story(ChannelRef(100, 1), "had a general", ContinueOptions())
    changed = sorted(table for table in before if after.get(table) != before[table])
    ok = friendly(message) and "full" in message and not changed and reply.model_version == 1
    ledger.record("faults", ok, f"PostgreSQL full disk on upload: {message!r}")
    assert ok, (message, changed, reply.model_version)
    # PostgreSQL's own error, not a stand-in: the server logged the failed extension
    assert "No space left on device" in postgres_server.log_text()

    # A training that finishes while the disk is full: the job fails clearly, the old model stays.
    filler.unlink()
    job = await service.train(ChannelRef(100, 1), ADMIN, "s.txt", STORY, TrainOptions(seed=1))
    filler = fill(disk)
    result = await service.wait_for_job(job.job_id)
    filler.unlink()
    record = await store.job(job.job_id)
    active = await store.active_model(1)
    ok = (
        result.state == "failed"
        and result.error is not None
        and friendly(result.error)
        and "full" in result.error
        and record is not None
        and record.state == "failed"
        and active is not None
        and active.version == 1
        and await store.integrity_check() == "ok"
    )
    ledger.record("faults", ok, f"PostgreSQL full disk at commit: {result.error!r}")
    assert ok, (result, record, active)
