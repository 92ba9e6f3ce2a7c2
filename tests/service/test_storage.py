from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.core.library import removal_plan
from bot.core.store import JobRecord, JobState, NewModel, NewStory, StoryDeletion
from bot.core.validation import JobOptions
from bot.errors import StorageError
from bot.store.schema.legacy import load_legacy
from bot.store.sqlite import SqliteStoryStore as StoryStore
from tests.conftest import BACKENDS

# The store's suite (the protocol's contract) runs on both backends: ``store`` and
# ``open_store`` are parametrized; the tests that look at SQLite's files open it by path.
OpenStore = Callable[[], Awaitable[Any]]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def open_store(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[OpenStore]:
    """Opens stores on one database of ``backend`` (each call another connection owner)."""
    opened: list[Any] = []
    if backend == "sqlite":
        path = request.getfixturevalue("tmp_path") / "db.sqlite3"

        async def open_one() -> Any:
            opened.append(await StoryStore.open(path))
            return opened[-1]
    else:
        from bot.store.postgres import PostgresStoryStore

        url = request.getfixturevalue("postgres_url")

        async def open_one() -> Any:
            opened.append(await PostgresStoryStore.open(url))
            return opened[-1]

    yield open_one
    for one in opened:
        await one.close()


@pytest.fixture
async def store(open_store: OpenStore) -> Any:
    return await open_store()


def _story(text: str = "the cat sat on the mat .") -> NewStory:
    return NewStory("s.txt", 1, "u", text, "0" * 64, "utf-8", len(text), 7, 6)


async def _add_job(
    store: StoryStore,
    channel_id: int,
    *,
    guild_id: int | None = None,
    channel_name: str | None = None,
    story: NewStory | None = None,
    append: bool = False,
) -> JobRecord:
    return await store.add_story_and_job(
        channel_id=channel_id,
        guild_id=guild_id,
        channel_name=channel_name,
        story=_story() if story is None else story,
        append=append,
        requested_by=1,
        requested_by_name="u",
        options={},
    )


async def _job_and_model(store: StoryStore, channel_id: int, *, append: bool = False) -> int:
    job = await _add_job(store, channel_id, guild_id=9, append=append)
    await store.start_job(job.id)
    model = await store.activate_model(
        job_id=job.id,
        channel_id=channel_id,
        model=NewModel(
            config={"units": 1}, vocabulary=["a", "b"], blob=b"blob", figures={}, options={}
        ),
        story_ids=job.story_ids,
        keep_versions=2,
    )
    return model.version


async def _delete(store: StoryStore, channel_id: int, story_id: int) -> StoryDeletion | None:
    return await store.delete_story(
        channel_id,
        story_id,
        guild_id=None,
        policy=lambda facts: removal_plan(facts, JobOptions({}, {}, {})),
        requested_by=1,
        requested_by_name="u",
    )


async def test_fresh_database_is_migrated_wal_with_foreign_keys(tmp_path: Path) -> None:
    store = await StoryStore.open(tmp_path / "sub" / "db.sqlite3")
    assert await store.schema_version() == len(load_legacy("sqlite"))
    await store.close()
    raw = sqlite3.connect(tmp_path / "sub" / "db.sqlite3")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"channels", "stories", "models", "model_stories", "jobs"} <= tables
    raw.close()
    again = await StoryStore.open(tmp_path / "sub" / "db.sqlite3")  # idempotent
    assert await again.schema_version() == len(load_legacy("sqlite"))
    await again.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "db.sqlite3")
    raw.execute("PRAGMA user_version = 999")
    raw.close()
    with pytest.raises(StorageError, match="newer"):
        await StoryStore.open(tmp_path / "db.sqlite3")


async def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "db.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError):
        await StoryStore.open(tmp_path / "db.sqlite3")


def test_migrations_must_be_numbered_in_order() -> None:
    with pytest.raises(StorageError, match="migration 3"):
        load_legacy("sqlite", "-- migration 1\nSELECT 1;\n-- migration 3\nSELECT 1;\n")


async def test_versions_prune_rollback_and_activation(store: StoryStore) -> None:
    for expected in (1, 2, 3):
        assert await _job_and_model(store, 5) == expected
    models = await store.list_models(5)
    assert [(m.version, m.active) for m in models] == [(3, True), (2, False)]
    rolled = await store.set_active_version(5, 2)
    assert rolled is not None and rolled.active
    assert (await store.active_model(5)).version == 2  # type: ignore[union-attr]
    assert await store.set_active_version(5, 1) is None  # pruned
    # A new version after a rollback keeps the newest N plus nothing else.
    assert await _job_and_model(store, 5) == 4
    assert [m.version for m in await store.list_models(5)] == [4, 3]
    job = (await store.jobs(5))[0]
    assert job.state == "done" and job.model_id is not None
    assert await store.integrity_check() == "ok"


async def test_remove_story_removes_models_trained_on_it(store: StoryStore) -> None:
    await _job_and_model(store, 5)
    await _job_and_model(store, 5, append=True)  # trained on stories 1 and 2
    stories = await store.list_stories(5)
    assert len(stories) == 2
    removed = await _delete(store, 5, stories[0].id)
    assert removed is not None and removed.deleted_versions == (1, 2)
    assert await store.active_model(5) is None
    # The active model went, so a retraining on its other story is queued.
    assert removed.retrain_job is not None and removed.retrain_job.story_ids == (stories[1].id,)
    assert await _delete(store, 5, 12345) is None
    assert await _delete(store, 6, stories[1].id) is None  # another channel's story


async def test_activation_refused_when_story_vanished(store: StoryStore) -> None:
    job = await _add_job(store, 5, channel_name="x")
    await _delete(store, 5, job.story_ids[0])
    with pytest.raises(StorageError, match="removed"):
        await store.activate_model(
            job_id=job.id,
            channel_id=5,
            model=NewModel(config={}, vocabulary=["a"], blob=b"x", figures={}, options={}),
            story_ids=job.story_ids,
            keep_versions=3,
        )
    assert await store.list_models(5) == []
    assert (await store.job(job.id)).state == "queued"  # type: ignore[union-attr]


async def test_forget_cascades_and_open_jobs_interrupted(store: StoryStore) -> None:
    await _job_and_model(store, 5)
    await _job_and_model(store, 6)
    open_job = await _add_job(store, 6)
    await store.start_job(open_job.id)
    # A store closed without finishing its job leaves an orphan; the core interrupts it.
    stale = await store.orphaned_jobs()
    assert stale == []  # this store is open: its jobs are not orphans
    await store.finish_job(open_job.id, JobState.INTERRUPTED, "restarted")
    record = await store.job(open_job.id)
    assert record is not None and record.state == "interrupted" and record.error == "restarted"
    assert await store.forget_channel(5)
    assert await store.list_stories(5) == [] and await store.list_models(5) == []
    assert await store.jobs(5) == []
    assert len(await store.list_models(6)) == 1
    assert not await store.forget_channel(5)


async def test_pruning_deletes_stories_no_kept_version_or_open_job_needs(
    store: StoryStore,
) -> None:
    # Replace-mode uploads: each version learned only its own story; 2 versions are kept.
    for _ in range(4):
        await _job_and_model(store, 5)
    models = await store.list_models(5)
    assert [m.version for m in models] == [4, 3]
    kept = sorted(i for m in models for i in m.story_ids)
    assert sorted(s.id for s in await store.list_stories(5)) == kept
    # A story an open job will train on survives a pruning; so does another channel's.
    await _job_and_model(store, 6)
    waiting = await _add_job(
        store, 5, guild_id=9, story=_story("a story still waiting for its training .")
    )
    await _job_and_model(store, 5)
    stories = {s.id for s in await store.list_stories(5)}
    assert waiting.story_ids[0] in stories and len(stories) == 3
    assert len(await store.list_stories(6)) == 1
    # The uploads never hit the channel's story limit: old ones went with their versions.
    assert await store.integrity_check() == "ok"


async def _set_owner(backend: str, store: Any, job_id: int, owner: str) -> None:
    """Rewrite a job's owner behind the store's back (as another process's row would be)."""
    if backend == "sqlite":
        raw = sqlite3.connect(store.path)
        raw.execute("UPDATE jobs SET state = 'running', owner = ? WHERE id = ?", (owner, job_id))
        raw.commit()
        raw.close()
    else:
        import asyncpg

        connection = await asyncpg.connect(store.url)
        await connection.execute(
            "UPDATE jobs SET state = 'running', owner = $1 WHERE id = $2", owner, job_id
        )
        await connection.close()


async def test_only_jobs_of_gone_owners_are_interrupted(
    open_store: OpenStore, backend: str
) -> None:
    live = await open_store()
    other = await open_store()
    job = await _add_job(live, 5)
    await live.start_job(job.id)
    # Another process (an offline command) opening the database leaves a live owner's job.
    assert await other.orphaned_jobs() == []
    assert (await other.job(job.id)).state == "running"  # type: ignore[union-attr]
    # Once its owner is gone (closed here; a dead process id elsewhere), it is interrupted.
    await live.close()
    stale = await other.orphaned_jobs()
    assert [j.id for j in stale] == [job.id]
    await other.finish_job(job.id, JobState.INTERRUPTED, "gone")
    record = await other.job(job.id)
    assert record is not None and record.state == "interrupted" and record.error == "gone"
    # A job whose owner process no longer exists (pid reuse is caught by its start time).
    await _set_owner(backend, other, job.id, other.owner.replace(f":{os.getpid()}:", ":999999999:"))
    assert [j.id for j in await other.orphaned_jobs()] == [job.id]


async def test_json_with_nan_round_trips(store: StoryStore) -> None:
    # Python's json writes NaN (a loss before the first epoch); both backends must keep it.
    job = await _add_job(store, 5)
    await store.update_job_progress(job.id, {"epoch": 0, "loss": float("nan")})
    record = await store.job(job.id)
    assert record is not None and record.progress is not None
    assert math.isnan(record.progress["loss"])


async def test_guild_filters_are_per_server_and_unique_by_key(store: StoryStore) -> None:
    assert await store.guild_filters(1) == []
    assert await store.add_guild_filter(1, "cafe", "Café", 7) is True
    assert await store.add_guild_filter(1, "cafe", "CAFE", 8) is False  # same key: kept as is
    assert await store.add_guild_filter(1, "笨 蛋", "笨蛋", None) is True
    assert await store.add_guild_filter(2, "cafe", "cafe", 9) is True
    first = await store.guild_filters(1)
    assert [(f.folded, f.word, f.added_by) for f in first] == [
        ("cafe", "Café", 7),
        ("笨 蛋", "笨蛋", None),
    ]
    assert all(f.guild_id == 1 and f.created_at for f in first)
    removed = await store.remove_guild_filter(1, "cafe")
    assert removed is not None and removed.word == "Café"
    assert await store.remove_guild_filter(1, "cafe") is None
    assert [f.folded for f in await store.guild_filters(1)] == ["笨 蛋"]
    assert [f.word for f in await store.guild_filters(2)] == ["cafe"]  # another server's stays


async def test_filters_version_grows_with_each_change_seen_by_every_connection(
    open_store: OpenStore,
) -> None:
    here, there = await open_store(), await open_store()  # two processes' connections
    assert await there.filters_version(1) == 0
    assert await here.add_guild_filter(1, "cafe", "Café", 7) is True
    one = await there.filters_version(1)
    assert one > 0 and await there.filters_version(2) == 0  # per server
    assert await here.add_guild_filter(1, "cafe", "CAFE", 8) is False  # no change, same version
    assert await there.filters_version(1) == one
    assert await here.remove_guild_filter(1, "cafe") is not None
    two = await there.filters_version(1)
    assert two > one
    assert await here.remove_guild_filter(1, "cafe") is None
    assert await there.filters_version(1) == two


async def test_still_open_names_the_jobs_no_process_has_ended(store: StoryStore) -> None:
    running, queued, ended = [await _add_job(store, c) for c in (1, 2, 3)]
    await store.start_job(running.id)
    await store.finish_job(ended.id, JobState.CANCELLED, "cancelled")
    assert await store.still_open([running.id, queued.id, ended.id, 999]) == {
        running.id,
        queued.id,
    }
    assert await store.still_open([]) == set()
