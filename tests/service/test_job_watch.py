"""The watch over this process's open jobs (``bot.core.job_watch``) during a store outage."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.core.job_records import JobLedger, OpenJob
from bot.core.job_watch import WATCH_SECONDS, JobWatch
from bot.core.validation import JobOptions
from bot.store.sqlite import SqliteStoryStore as StoryStore
from tests.service.conftest import channel, tiny_config


async def test_a_store_outage_is_one_warning_not_four_a_second(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tiny_config(tmp_path)
    store = await StoryStore.open(config.storage.database)
    await store.close()  # every lookup now fails, as in an outage
    loop = asyncio.get_running_loop()
    job = OpenJob(7, channel(1), 1, (), JobOptions({}, {}, {}), loop.create_future())
    watching = [job]
    watch = JobWatch(JobLedger(config, store), lambda: watching, lambda job, result: None)
    caplog.set_level(logging.WARNING, logger="bot.core.job_watch")
    watch.start(asyncio.ensure_future)
    # The first warning (bounded wait: a busy machine), then several more failing rounds.
    for _ in range(240):
        if caplog.records:
            break
        await asyncio.sleep(WATCH_SECONDS)
    await asyncio.sleep(8 * WATCH_SECONDS)
    watching.clear()  # no open job: the watch ends
    await asyncio.sleep(2 * WATCH_SECONDS)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("could not look up the open jobs in the store for 0 s"), warnings
