"""The one place that wires the app: store + executor + service.

    async with open_app(config) as app:
        await app.service.continue_story(...)

The runner, the CLI, the console, tests and benches all open the app here. A new store backend
or executor is one more branch in :func:`open_store` or :func:`open_executor`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.config import Config, StorageConfig
from bot.core.executor import TrainingExecutor
from bot.core.service import StoryService
from bot.core.store import StoryStore
from bot.errors import ConfigError

logger = logging.getLogger(__name__)
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_MMAP_THRESHOLD = 128 * 1024  # glibc's default start value, kept fixed


def keep_large_arrays_out_of_the_heap() -> None:
    """Fix glibc's mmap threshold at its default 128 KiB, so every model array is its own
    mapping, returned to the system when freed.

    By default glibc raises the threshold (up to 32 MiB) each time a large mapping is freed;
    after the first model load, the float32 copies and load buffers of the next models land in
    the heap, whose freed holes stay resident: measured with bench/bench_model_cache_memory.py,
    64 cached models cost 45 MiB more RSS than the cache counts, and a bounded cache grew 50 %
    past its bound. Linux with glibc only; elsewhere nothing happens.
    """
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        if not libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD):
            logger.debug("mallopt(M_MMAP_THRESHOLD) refused")
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        logger.debug("no glibc mallopt: the allocator keeps its own thresholds")


@dataclass(frozen=True)
class App:
    config: Config
    store: StoryStore
    executor: TrainingExecutor
    service: StoryService
    owns_executor: bool = True

    async def shutdown(self) -> None:
        """Close the service, then the executor if ``open_app`` opened it (both idempotent);
        ``open_app`` does this on exit, an adapter may do it earlier (the Discord bot)."""
        try:
            await self.service.close()
        finally:
            if self.owns_executor:
                await self.executor.close()


def storage_url(storage: StorageConfig) -> str:
    """The configured store as a URL (the SQLite default too), password included: never log
    it (``redact_url``)."""
    if storage.backend == "sqlite":
        return f"sqlite:///{storage.sqlite_path}"
    from bot.store.url_password import with_password

    assert storage.url is not None
    return with_password(storage.url, storage.password_file)


def redact_url(url: str) -> str:
    """``url`` without its password, for messages."""
    from bot.store.url_password import redact_url as redact

    return redact(url)


async def open_store(config: Config) -> StoryStore:
    """The configured store: the SQLite file ``storage.database`` (the default) or the
    database ``storage.url`` names (SQLite or PostgreSQL)."""
    from bot.store.urls import open_store_url

    return await open_store_url(storage_url(config.storage), config.storage)


async def migrate_storage(source: str, target: str, *, replace: bool = False) -> list[str]:
    """``migrate-storage``: copy every row of ``source`` into ``target``, verify; the report."""
    from bot.store.migration import migrate_storage as migrate

    return (await migrate(source, target, replace=replace)).lines()


def open_executor(config: Config) -> TrainingExecutor:
    """The configured executor: ``workers.count`` local spawned processes, or a Ray cluster."""
    workers = config.workers
    if workers.backend == "ray":
        try:
            from bot.executors.ray_cluster import RaySettings, RayTrainingExecutor
        except ImportError as exc:  # the optional extra is missing
            raise ConfigError(
                "workers.backend = \"ray\" needs Ray: pip install 'fabulist[ray]'"
            ) from exc
        return RayTrainingExecutor(
            RaySettings(
                address=workers.ray_address,
                cpus_per_job=workers.cpus_per_job,
                gpus_per_job=workers.gpus_per_job,
                max_concurrent_jobs=workers.max_concurrent_jobs,
                keras_backend=workers.ray_keras_backend,
            )
        )
    from bot.executors.local import LocalProcessExecutor

    return LocalProcessExecutor(workers.count)


@asynccontextmanager
async def open_app(
    config: Config,
    *,
    store: StoryStore | None = None,
    executor: TrainingExecutor | None = None,
    warm_workers: bool | None = None,
    start: bool = True,
    close_executor: bool | None = None,
    serving: bool = False,
) -> AsyncIterator[App]:
    """Open the store, the executor and the service; close them in reverse order.

    A ``store`` or ``executor`` passed in is used and left open (its owner closes it), unless
    ``close_executor`` (an executor opened and prepared before the loop, handed over).
    ``start=False`` skips ``service.start`` (the caller starts it, e.g. after a fault test).
    ``warm_workers``: start the trainers now (None: as ``workers.warm`` says).
    ``serving`` (the Discord bot): generation's kernel is loaded before the bot connects, so
    the first replies do not wait on it (``ModelCache.prepare``); commands that generate
    nothing (``sync``, ``reshard``, ``train``) do not wait for it either.
    """
    keep_large_arrays_out_of_the_heap()
    own_store = store is None
    opened_store = store if store is not None else await open_store(config)
    own_executor = executor is None if close_executor is None else close_executor
    opened_executor = executor if executor is not None else open_executor(config)
    service = StoryService(config, opened_store, opened_executor)
    try:
        if serving:
            await service.cache.prepare()
        if start:
            await service.start(warm_workers=warm_workers)
        yield App(config, opened_store, opened_executor, service, own_executor)
    finally:
        try:
            await App(config, opened_store, opened_executor, service, own_executor).shutdown()
        finally:
            if own_store:
                await opened_store.close()
