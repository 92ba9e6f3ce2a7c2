"""A database written before Alembic upgrades in place and serves, on both backends.

The database is built as fabulist built it up to schema version 10: its numbered migrations
(frozen in bot/store/schema/legacy_*.sql), each run in one transaction with its version, then
rows written as that store wrote them. Opening it stamps it into Alembic's chain (``0010``, the
baseline) and upgrades it to the head; its data reads back and it takes writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.core.store import NewStory
from bot.errors import StorageError
from bot.store.schema.legacy import load_legacy
from bot.store.schema.upgrade import head
from bot.store.urls import open_store_url
from tests.conftest import BACKENDS

ROWS = """
INSERT INTO channels (channel_id, guild_id, name, created_at, last_version, replies)
    VALUES (7, 70, 'tales', 'WHEN', 1, 3);
INSERT INTO stories (channel_id, filename, uploader_id, uploader_name, text, sha256, encoding,
    bytes, symbols, vocabulary_size, created_at)
    VALUES (7, 'a.txt', 5, 'ann', 'the cat sat .', 'SHA', 'utf-8', 13, 4, 4, 'WHEN');
INSERT INTO jobs (channel_id, guild_id, requested_by, requested_by_name, state, story_ids,
    options, created_at, started_at, finished_at)
    VALUES (7, 70, 5, 'ann', 'done', '[1]', '{"epochs": 1}', 'WHEN', 'WHEN', 'WHEN');
INSERT INTO models (channel_id, version, config, vocabulary, blob, figures, options, job_id,
    created_at) VALUES (7, 1, '{"units": 8}', '["the", "cat", "sat", "."]', BLOB, '{}',
    '{"epochs": 1}', 1, 'WHEN');
INSERT INTO model_stories (model_id, story_id, position) VALUES (1, 1, 0);
UPDATE jobs SET model_id = 1;
UPDATE channels SET active_model_id = 1;
""".replace("WHEN", "2026-12-01T10:00:00+00:00").replace("SHA", "a" * 64)


@pytest.fixture(params=BACKENDS)
def legacy_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at schema version 10, as fabulist wrote it before Alembic, with one channel."""
    if request.param == "sqlite":
        path = tmp_path / "v10.sqlite3"
        raw = sqlite3.connect(path)
        for version, sql in load_legacy("sqlite"):
            raw.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;")
        rows = ROWS.replace("BLOB", "X'0102'")
        raw.executescript(f"BEGIN;\n{rows}\nCOMMIT;")
        raw.close()
        yield f"sqlite:///{path}"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database(template=None)
    name = url.rsplit("/", 1)[1]
    server.psql("CREATE TABLE schema_version (version INTEGER NOT NULL); "
                "INSERT INTO schema_version (version) VALUES (0)", name)  # fmt: skip
    for version, sql in load_legacy("postgresql"):
        server.psql(f"BEGIN;\n{sql}\nUPDATE schema_version SET version = {version};\nCOMMIT;", name)
    rows = ROWS.replace("BLOB", "decode('0102', 'hex')")
    server.psql(f"BEGIN;\n{rows}\nCOMMIT;", name)
    yield url
    server.drop_database(url)


def _revision(url: str, request: pytest.FixtureRequest) -> str:
    if url.startswith("sqlite:///"):
        raw = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return str(raw.execute("SELECT version_num FROM alembic_version").fetchone()[0])
        finally:
            raw.close()
    server = request.getfixturevalue("postgres_server")
    return server.psql("SELECT version_num FROM alembic_version", url.rsplit("/", 1)[1]).strip()


async def test_a_version_10_database_upgrades_in_place_and_serves(
    legacy_url: str, request: pytest.FixtureRequest
) -> None:
    store: Any = await open_store_url(legacy_url)
    try:
        assert _revision(legacy_url, request) == head()
        assert await store.schema_version() == 10
        active = await store.active_model(7)
        assert (active.version, active.story_ids, active.vocabulary_size) == (1, (1,), 4)
        assert active.config == {"units": 8}
        assert await store.model_blob(active.id) == b"\x01\x02"
        [story] = await store.list_stories(7)
        assert (story.filename, story.uploader_name) == ("a.txt", "ann")
        assert await store.story_texts([story.id]) == ["the cat sat ."]
        assert (await store.channel_counters(7)).replies == 3
        assert [j.state for j in await store.jobs(7)] == ["done"]
        # and it takes writes: a new story with its job, a reply counted
        story2 = NewStory("b.txt", 6, "bo", "a dog ran .", "b" * 64, "utf-8", 11, 4, 4)
        job = await store.add_story_and_job(
            channel_id=7, guild_id=70, channel_name=None, story=story2, append=True,
            requested_by=6, requested_by_name="bo", options={},
        )  # fmt: skip
        assert job.story_ids == (1, 2)
        await store.count_reply(7)
        assert (await store.channel_counters(7)).replies == 4
        assert await store.integrity_check() == "ok"
    finally:
        await store.close()
    again: Any = await open_store_url(legacy_url)  # stamped now: opens as it is
    try:
        assert _revision(legacy_url, request) == head()
        assert len(await again.list_stories(7)) == 2
    finally:
        await again.close()


async def test_a_revision_this_code_does_not_know_is_refused(
    legacy_url: str, request: pytest.FixtureRequest
) -> None:
    store: Any = await open_store_url(legacy_url)
    await store.close()
    update = "UPDATE alembic_version SET version_num = 'f00d'"
    if legacy_url.startswith("sqlite:///"):
        raw = sqlite3.connect(legacy_url.removeprefix("sqlite:///"))
        raw.execute(update)
        raw.commit()
        raw.close()
    else:
        request.getfixturevalue("postgres_server").psql(update, legacy_url.rsplit("/", 1)[1])
    with pytest.raises(StorageError, match="newer than this fabulist"):
        await open_store_url(legacy_url)


def _differences(connection: Any) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match bot/store/tables.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from bot.store.tables import metadata

    dialect = connection.dialect.name

    def include(obj: Any, name: str | None, kind: str, reflected: bool, _other: Any) -> bool:
        if kind == "table":
            if name == "schema_version":  # the numbered migrations' own record
                return False
            return obj is None or obj.info.get("dialect", dialect) == dialect
        return True

    context = MigrationContext.configure(
        connection, opts={"compare_type": False, "include_object": include}
    )
    found = list(compare_metadata(context, metadata))
    if dialect != "sqlite":
        return found

    # SQLite's reflection says less: an INTEGER PRIMARY KEY column reads as nullable, and a
    # column's inline ``REFERENCES ... ON DELETE`` loses its name and ON DELETE: a foreign key
    # counts as the same when its columns and the ones it refers to are.
    def key(fk: Any) -> tuple[Any, ...]:
        return (
            fk.parent.name,
            tuple(c.name for c in fk.columns),
            fk.referred_table.name,
            tuple(e.column.name for e in fk.elements),
        )

    removed = {key(d[1]) for d in found if isinstance(d, tuple) and d[0] == "remove_fk"}
    added = {key(d[1]) for d in found if isinstance(d, tuple) and d[0] == "add_fk"}
    return [
        d
        for d in found
        if not (isinstance(d, tuple) and d[0] in ("remove_fk", "add_fk") and key(d[1]) in
                removed & added)
        and not (isinstance(d, list) and d[0][0] == "modify_nullable"
                 and metadata.tables[d[0][2]].c[d[0][3]].primary_key)
    ]  # fmt: skip


async def test_both_dialects_match_the_tables(
    legacy_url: str, request: pytest.FixtureRequest
) -> None:
    """A fresh database and an upgraded one, on either dialect, hold what tables.py says."""
    fresh = "sqlite:///" + str(Path(legacy_url.removeprefix("sqlite:///")).with_name("new.db"))
    if not legacy_url.startswith("sqlite:///"):
        fresh = request.getfixturevalue("postgres_url")
    for url in (legacy_url, fresh):
        store: Any = await open_store_url(url)
        await store.close()
        if url.startswith("sqlite:///"):
            from sqlalchemy import create_engine

            engine = create_engine(url)
            with engine.connect() as connection:
                assert _differences(connection) == []
            engine.dispose()
        else:
            from sqlalchemy.ext.asyncio import create_async_engine

            async_engine = create_async_engine(
                url.replace("postgresql://", "postgresql+asyncpg://")
            )
            async with async_engine.connect() as connection:
                assert await connection.run_sync(_differences) == []
            await async_engine.dispose()
