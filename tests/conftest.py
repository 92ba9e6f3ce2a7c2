"""Suite-wide fixtures: a real PostgreSQL server for the tests that run on both backends.

The server starts once per session, on first use (tests/postgres_server.py), and is stopped and
its directory removed at the end. Each test gets its own database cloned from a migrated template.
Without PostgreSQL installed the tests that need it fail with the command that installs it;
``FABULIST_TEST_POSTGRES=skip`` skips them instead (a developer machine without PostgreSQL).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.postgres_server import TEMPLATE, PostgresServer, PostgresUnavailable

BACKENDS = ("sqlite", "postgresql")


async def _migrate(url: str) -> None:
    from bot.store.postgres import PostgresStoryStore

    store = await PostgresStoryStore.open(url)
    await store.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if os.environ.get("FABULIST_TEST_POSTGRES") == "skip":
        pytest.skip("FABULIST_TEST_POSTGRES=skip")
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.fail(f"{exc} (or set FABULIST_TEST_POSTGRES=skip)")
    server.start()
    try:
        server.psql(f"CREATE DATABASE {TEMPLATE}")
        # The fixture may be set up inside a test's running loop: migrate on a thread's own.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, _migrate(server.url(TEMPLATE))).result()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, migrated database of the session's server."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
