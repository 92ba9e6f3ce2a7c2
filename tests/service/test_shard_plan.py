"""The shard plan (bot/core/shard_plan.py) on both backends: which shard count answers.

Two gates on their own store connections stand for the old set's process (2 shards) and the new
set's (3 shards); ``python -m bot reshard`` runs as a real process. For every interaction time,
before, during and after the switch, exactly one of the two answers.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.core.shard_plan import LEAD_SECONDS, ShardGate, reshard
from bot.errors import UserError
from bot.store.schema.legacy import load_legacy
from bot.store.sqlite import SqliteStoryStore
from tests.conftest import BACKENDS
from tests.fake_discord.bot_process import REPO_ROOT

OpenStore = Callable[[], Awaitable[Any]]
SEEN_WITHIN_SECONDS = 1.0  # the module's promise for another process's change


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def open_store(url: str) -> AsyncIterator[OpenStore]:
    from bot.store.urls import open_store_url

    opened: list[Any] = []

    async def open_one() -> Any:
        opened.append(await open_store_url(url))
        return opened[-1]

    yield open_one
    for one in opened:
        await one.close()


async def _gate(open_store: OpenStore, shard_count: int | None) -> ShardGate:
    gate = ShardGate(await open_store())
    await gate.start(shard_count)
    return gate


def _reshard_process(url: str, tmp_path: Path, shard_count: int) -> subprocess.Popen[str]:
    config = tmp_path / "cli.toml"
    config.write_text(f'[storage]\nurl = "{url}"\n')
    argv = [sys.executable, "-m", "bot", "--config", str(config), "reshard"]
    return subprocess.Popen(
        [*argv, "--shard-count", str(shard_count)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_a_switch_in_another_process_is_seen_in_time_and_one_set_answers(
    open_store: OpenStore, url: str, tmp_path: Path
) -> None:
    old = await _gate(open_store, 2)  # the first sharded process records its count
    new = await _gate(open_store, 3)
    try:
        assert old.plan is not None and old.plan.shard_count == 2
        now = time.time()
        assert await old.answers(now) and not await new.answers(now)

        cli = _reshard_process(url, tmp_path, 3)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60.0
        seen: dict[str, float] = {}
        decided: list[tuple[float, bool, bool]] = []
        while len(seen) < 2 or time.time() < max(seen.values()) + LEAD_SECONDS + 1.0:
            assert loop.time() < deadline, "the switch was not seen within 60 s"
            for name, gate in (("old", old), ("new", new)):
                plan = gate.plan
                if name not in seen and plan is not None and plan.shard_count == 3:
                    seen[name] = time.time()
                    # seen before it takes effect, within the promised second of the write
                    assert seen[name] < plan.switch_at
                    written = plan.switch_at - LEAD_SECONDS
                    assert seen[name] - written < SEEN_WITHIN_SECONDS, seen[name] - written
            # interactions created just now, a moment ago and a moment ahead
            for created_at in (time.time() - 0.5, time.time(), time.time() + 0.5):
                by_old, by_new = await old.answers(created_at), await new.answers(created_at)
                decided.append((created_at, by_old, by_new))
            await asyncio.sleep(0.05)
        out, err = await asyncio.to_thread(cli.communicate, timeout=60)
        assert cli.returncode == 0, err
        assert "Shard count 3 answers every interaction created from" in out
        assert "Switched: the processes with --shard-count 3 answer now." in out

        plan = new.plan
        assert plan is not None and plan.previous_count == 2
        both = [t for t, a, b in decided if a and b]
        neither = [t for t, a, b in decided if not a and not b]
        assert both == [] and neither == [], (both, neither)
        assert any(a for _, a, _ in decided) and any(b for _, _, b in decided)
        for created_at, by_old, _ in decided:
            assert by_old == (created_at < plan.switch_at)
    finally:
        await old.close()
        await new.close()


async def test_reshard_refuses_bad_counts_clearly(open_store: OpenStore) -> None:
    store = await open_store()
    for bad in (0, -2):
        with pytest.raises(UserError, match="must be 1 or more"):
            await reshard(store, bad)
    first = await reshard(store, 2)  # nothing recorded yet: active at once
    assert first.recorded_first and first.plan.shard_count == 2
    with pytest.raises(UserError, match="2 is already the active shard count"):
        await reshard(store, 2)
    switched = await reshard(store, 3)
    assert switched.plan.previous_count == 2 and not switched.recorded_first
    with pytest.raises(UserError, match="still taking effect"):
        await reshard(store, 4)


def test_reshard_cli_refuses_zero_negative_and_the_active_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "db.sqlite3")
    assert main(["--db", db, "reshard", "--shard-count", "0"]) == 1
    assert "reshard: The shard count must be 1 or more (got 0)." in capsys.readouterr().err
    assert main(["--db", db, "reshard", "--shard-count", "-1"]) == 1
    assert "must be 1 or more (got -1)" in capsys.readouterr().err
    out = io.StringIO()
    assert main(["--db", db, "reshard", "--shard-count", "2"], out=out) == 0
    assert "2 is the active one now" in out.getvalue()
    assert "python -m bot run --shard-ids I --shard-count 2" in out.getvalue()
    assert main(["--db", db, "reshard", "--shard-count", "2"]) == 1
    assert "2 is already the active shard count" in capsys.readouterr().err


async def test_an_unsharded_process_answers_everything(open_store: OpenStore) -> None:
    store = await open_store()
    await reshard(store, 3)
    gate = await _gate(open_store, None)
    assert await gate.answers(time.time())
    plan = (await store.shard_plan()).plan
    assert plan is not None and plan.shard_count == 3  # it recorded nothing


async def test_a_database_at_schema_version_9_upgrades(
    backend: str, url: str, open_store: OpenStore, request: pytest.FixtureRequest
) -> None:
    """Migration 10 (the shard plan) applies to a database of version 9."""
    from bot.store.urls import open_store_url

    store = await open_store_url(url)  # created at the latest version, then taken back to 9
    await store.close()
    if backend == "sqlite":
        raw = sqlite3.connect(url.removeprefix("sqlite:///"))
        raw.execute("DROP TABLE shard_plan")
        raw.execute("PRAGMA user_version = 9")
        raw.commit()
        raw.close()
    else:
        server = request.getfixturevalue("postgres_server")
        name = url.rsplit("/", 1)[1]
        server.psql("DROP TABLE shard_plan; UPDATE schema_version SET version = 9", name)
    upgraded = await open_store()
    assert await upgraded.schema_version() == len(load_legacy("sqlite")) == 10
    assert (await upgraded.shard_plan()).plan is None
    assert (await upgraded.record_shard_count(2)).shard_count == 2


async def test_version_9_sqlite_file_upgrades_from_its_own_migrations(tmp_path: Path) -> None:
    path = tmp_path / "v9.sqlite3"
    raw = sqlite3.connect(path)
    for version, sql in load_legacy("sqlite")[:9]:
        raw.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;")
    raw.close()

    store = await SqliteStoryStore.open(path)
    try:
        assert await store.schema_version() == 10
        assert (await store.record_shard_count(4)).shard_count == 4
    finally:
        await store.close()
