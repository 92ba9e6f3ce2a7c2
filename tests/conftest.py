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
from typing import Any

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


# `make test` runs pytest-xdist workers with `--dist loadscope`, here scheduled by module: a
# module's tests run on one worker, in order (its module-scoped bots are shared by its tests),
# and every Ray test runs on one worker, so one Ray cluster (and one Ray executor for the tests
# that take the `pool` fixture) serves the whole run instead of one per worker. The controller
# sees node ids only: Ray tests are those of the Ray modules and those run with the `ray`
# executor parameter (tests/service/conftest.py's `pool`).
RAY_MODULES = ("tests/service/test_ray_executor.py", "tests/e2e/test_discord_ray.py")


def worker_group(nodeid: str) -> str:
    """The worker group of a test: "ray" or its module's path."""
    module, _, name = nodeid.partition("::")
    parameters = name.partition("[")[2]
    if module in RAY_MODULES or parameters == "ray]" or parameters.startswith("ray-"):
        return "ray"
    return module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return ModuleScheduling(config, log)


# The reliability ledgers of pytest-xdist workers, merged on the controller, which loads no
# tests/reliability/conftest.py of its own (it collects nothing).
WORKER_LEDGERS = pytest.StashKey[list[dict[str, Any]]]()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    ledger = getattr(node, "workeroutput", {}).get("reliability_ledger")
    if ledger is not None:
        node.config.stash.setdefault(WORKER_LEDGERS, []).append(ledger)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if WORKER_LEDGERS not in config.stash:
        return
    from tests.reliability.conftest import Ledger, print_ledger

    book = Ledger()
    for ledger in config.stash[WORKER_LEDGERS]:
        book.merge(ledger)
    print_ledger(terminalreporter, book)
