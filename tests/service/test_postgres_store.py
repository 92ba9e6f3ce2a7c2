"""What only the shared PostgreSQL store must do: guarantees across processes, lost connections.

Every test runs against a real server (tests/postgres_server.py), each on a fresh database.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.app import open_app, open_store
from bot.core.api import ContinueOptions, TrainOptions
from bot.errors import StorageError, StorageUnavailable, TrainingElsewhere
from bot.store.postgres import (
    LOST_CONNECTION_MESSAGE,
    NOT_ANSWERING_MESSAGE,
    UNAVAILABLE_MESSAGE,
    redact_url,
    session_settings,
)
from bot.store.postgres import PostgresStoryStore as PostgresStore
from bot.store.schema.legacy import load_legacy
from tests.postgres_server import PostgresServer
from tests.service.conftest import ADMIN, STORY, channel, tiny_config
from tests.service.test_storage import _add_job, _story
from tests.support import seed_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.open(postgres_url)
    yield store
    await store.close()


def test_one_migration_history_for_both_dialects() -> None:
    assert [v for v, _ in load_legacy("postgresql")] == [v for v, _ in load_legacy("sqlite")]


async def test_schema_version_and_newer_schema_refused(pg: PostgresStore) -> None:
    assert await pg.schema_version() == len(load_legacy("sqlite"))
    connection = await asyncpg.connect(pg.url)
    await connection.execute("UPDATE schema_version SET version = 999")
    await connection.close()
    with pytest.raises(StorageError, match="newer"):
        await PostgresStore.open(pg.url)


async def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    url = "postgresql://fabulist:hunter2@127.0.0.1:1/nothing"
    with pytest.raises(StorageError) as caught:
        await PostgresStore.open(url)
    assert "hunter2" not in str(caught.value) and "cannot connect" in str(caught.value)
    assert redact_url(url) == "postgresql://fabulist:***@127.0.0.1:1/nothing"


_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from bot.core.store import NewStory
    from bot.store.postgres import PostgresStoryStore as PostgresStore

    async def main():
        store = await PostgresStore.open(sys.argv[1])
        job = await store.add_story_and_job(
            channel_id=5, guild_id=None, channel_name=None,
            story=NewStory("s.txt", 1, "u", "a b c d .", "0" * 64, "utf-8", 9, 5, 5),
            append=False, requested_by=1, requested_by_name="u", options={})
        await store.start_job(job.id)
        print(job.id, flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
    """
)


async def test_one_training_per_channel_across_processes_and_a_killed_owner(
    pg: PostgresStore,
) -> None:
    # Another bot process (a real one) queues and starts a training of channel 5.
    holder = subprocess.Popen(  # noqa: ASYNC220 - killed below, a few seconds at most
        [sys.executable, "-c", _HOLDER, pg.url], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.to_thread(holder.stdout.readline)
        held_job = int(line)
        with pytest.raises(TrainingElsewhere, match=f"job #{held_job}"):
            await _add_job(pg, 5)
        assert await pg.orphaned_jobs() == []  # it is alive
        other_channel = await _add_job(pg, 6)  # channels are independent
        assert other_channel.state == "queued"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # Its connection died with it, so its owner lock is gone: the job is an orphan now (for
    # the next start to interrupt) and no longer blocks the channel.
    for _ in range(50):
        try:
            job = await _add_job(pg, 5)
            break
        except TrainingElsewhere:
            await asyncio.sleep(0.1)
    else:
        pytest.fail("the killed process's job still blocks the channel")
    assert [j.id for j in await pg.orphaned_jobs()] == [held_job]
    assert job.state == "queued"
    assert await pg.integrity_check() == "ok"


async def test_a_queued_job_is_claimed_by_exactly_one_process(postgres_url: str) -> None:
    stores = [await PostgresStore.open(postgres_url) for _ in range(4)]
    try:
        job = await _add_job(stores[0], 5)
        await asyncio.gather(*(store.start_job(job.id) for store in stores))
        connection = await asyncpg.connect(postgres_url)
        row = await connection.fetchrow("SELECT state, owner FROM jobs WHERE id = $1", job.id)
        await connection.close()
        assert row is not None and row["state"] == "running"
        assert row["owner"] in {store.owner for store in stores}
        # the claimant is alive for every other process
        assert await stores[3].orphaned_jobs() == []
    finally:
        for store in stores:
            await store.close()


async def test_dropped_connection_mid_request_is_clear_and_the_next_reconnects(
    pg: PostgresStore,
) -> None:
    first = await _add_job(pg, 5)
    await pg.start_job(first.id)
    # Hold channel 6's row so the store's next write waits inside the server...
    blocker = await asyncpg.connect(pg.url)
    await blocker.execute("INSERT INTO channels (channel_id, created_at) VALUES (6, 'x')")
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute("SELECT 1 FROM channels WHERE channel_id = 6 FOR UPDATE")
    request = asyncio.ensure_future(_add_job(pg, 6))
    await asyncio.sleep(0.5)
    # ... and drop every connection of the store (pool and owner lock) mid-request.
    killed = await blocker.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    assert killed >= 2
    with pytest.raises(StorageUnavailable) as caught:
        await request
    assert caught.value.message == LOST_CONNECTION_MESSAGE
    await transaction.rollback()
    await blocker.close()
    # The next requests reconnect; nothing half-written; the owner lock is held again.
    job = await _add_job(pg, 6)
    assert job.state == "queued" and [j.id for j in await pg.jobs(6)] == [job.id]
    other = await PostgresStore.open(pg.url)
    try:
        assert await other.orphaned_jobs() == []  # pg's jobs stay alive
    finally:
        await other.close()


async def test_read_only_database_refuses_writes_clearly(pg: PostgresStore) -> None:
    await _add_job(pg, 5)
    connection = await asyncpg.connect(pg.url)
    name = await connection.fetchval("SELECT current_database()")
    await connection.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    await connection.close()
    # New sessions start read-only (a replica promoted wrong, an operator's lock)
    await pg._pool.expire_connections()
    with pytest.raises(StorageUnavailable) as caught:
        await pg.add_story_and_job(
            channel_id=7, guild_id=None, channel_name=None, story=_story(), append=False,
            requested_by=1, requested_by_name="u", options={},
        )  # fmt: skip
    assert caught.value.message == UNAVAILABLE_MESSAGE
    assert len(await pg.list_stories(5)) == 1 and await pg.list_stories(7) == []


async def test_service_trains_and_continues_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    config = tiny_config(tmp_path, storage={"url": postgres_url})
    assert config.storage.backend == "postgresql"
    async with open_app(config) as app:
        job = await app.service.train(channel(7), ADMIN, "cat.txt", STORY, TrainOptions(seed=1))
        result = await app.service.wait_for_job(job.job_id)
        assert result.state == "done", result.error
        reply = await app.service.continue_story(
            channel(7), "had a general", ContinueOptions(length=8)
        )
        assert len(reply.text.split()) >= 8
        assert isinstance(app.store, PostgresStore)
        assert (await app.store.active_model(7)) is not None
    store = await open_store(config)  # another process's view: the same counters
    try:
        counters = await store.channel_counters(7)
        assert (counters.trainings, counters.replies) == (1, 1)
    finally:
        await store.close()


async def test_commit_durability_matches_sqlite_unless_the_url_says(pg: PostgresStore) -> None:
    assert session_settings(pg.url)["synchronous_commit"] == "off"
    assert "synchronous_commit" not in session_settings(pg.url + "?synchronous_commit=on")
    async with pg._pool.acquire() as connection:
        assert await connection.fetchval("SHOW synchronous_commit") == "off"
    durable = await PostgresStore.open(pg.url + "?synchronous_commit=on")
    try:
        async with durable._pool.acquire() as connection:
            assert await connection.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await durable.close()


async def test_a_frozen_database_is_a_clear_error_within_seconds(
    tmp_path: Path, postgres_server: PostgresServer, postgres_url: str
) -> None:
    # The default storage.timeout_seconds (4 s) bounds every wait: a /continue and a /train
    # against a server whose processes are all stopped (SIGSTOP) answer "not answering" in
    # about that time, not after a minute; resumed (SIGCONT), the same requests work again.
    config = tiny_config(tmp_path, storage={"url": postgres_url})
    assert config.storage.timeout_seconds == 4.0
    async with open_app(config, warm_workers=False) as app:
        await seed_model(app.store, 7, STORY.decode())
        prompt, options = "had a general", ContinueOptions(length=4)
        assert (await app.service.continue_story(channel(7), prompt, options)).model_version == 1
        waits = {}
        with postgres_server.frozen():
            for what, request in (
                ("continue", lambda: app.service.continue_story(channel(8), prompt, options)),
                (
                    "train",
                    lambda: app.service.train(channel(9), ADMIN, "s.txt", STORY, TrainOptions()),
                ),
            ):
                started = time.monotonic()
                with pytest.raises(StorageUnavailable) as caught:
                    await request()
                waits[what] = time.monotonic() - started
                assert caught.value.message == NOT_ANSWERING_MESSAGE
        print(f"frozen database: answered after {waits}")  # measured; the bound has margin
        assert all(wait < 8.0 for wait in waits.values()), waits
        reply = await app.service.continue_story(channel(7), prompt, options)
        assert reply.model_version == 1
        assert [s.filename for s in await app.store.list_stories(7)] == ["seed.txt"]
        job = await app.service.train(channel(9), ADMIN, "s.txt", STORY, TrainOptions(seed=1))
        await app.service.cancel(channel(9), ADMIN)
        assert (await app.service.wait_for_job(job.job_id)).state == "cancelled"
