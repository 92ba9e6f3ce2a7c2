"""The storage faults that apply to PostgreSQL (issue 13), against a real server.

- SIGKILL of a process committing model versions (``commit_loop.py``) at random moments: after
  each, every committed version is there with its blob, the active model is the newest, the
  invariants hold, and the killed process's open job is found orphaned (its owner lock died with
  its connection) and interrupted by the next store, on any host.
- A lost connection mid-request and a read-only database: tests/service/test_postgres_store.py.
- A full disk is not simulated for PostgreSQL (it needs a size-limited file system for the
  server's data directory); the store maps DiskFullError to the same clear StorageUnavailable.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys

import asyncpg
import pytest

from bot.core.store import JobState
from bot.store.postgres import PostgresStoryStore as PostgresStore
from model import from_bytes
from tests.reliability.conftest import REPO, Ledger
from tests.reliability.test_faults import ENV

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
