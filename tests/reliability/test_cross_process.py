"""Operator and cross-process actions reach every running process (issue 24, bugs 5 and 6), on
SQLite and PostgreSQL.

Process A is this test's service (``open_app``: its own store connection, scheduler, filter
cache and spawned trainer); process B is another real process on the same database:

- ``python -m bot forget-user`` (the CLI) while A trains the channel on a history story holding
  the member's messages: A's training stops (cancelled, with the reason) within a bound, no
  model trained on the deleted text is ever stored, and the channel retrains without it.
- ``tests/reliability/filter_actor.py`` adds, then removes, a server's filtered word after A has
  cached the server's filters: A refuses, then accepts again, a prompt holding the word.

The promise is 1 s; the tests allow 10 s (a busy machine) and record the measured latency in
the reliability summary.
"""

# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import App, open_app
from bot.config import load_config
from bot.core.api import ChannelRef, ContinueOptions, HistoryMessage, JobProgress, TrainOptions
from bot.errors import InvalidOption
from model import from_bytes
from tests.conftest import BACKENDS
from tests.reliability.conftest import REPO, STORY, Ledger
from tests.reliability.helpers import seed_model
from tests.reliability.test_faults import ADMIN, ENV
from tests.support import prose_story

pytestmark = pytest.mark.slow

GUILD, CHANNEL = 100, 7
ALICE, BOB = 11, 12
BOB_MARKER = "zorblax"  # a word only bob's messages hold
BOUND_SECONDS = 10.0  # the promise is 1 s: generous for a busy machine
PROMPT = "the mice had a general"
# Long enough that a training is still running when the other process acts (no plateau soon).
TRAINING = {"units": 16, "embedding_dim": 16, "max_epochs": 300, "max_seconds": 90.0}
SHORT = {"max_seconds": 3.0}  # version 1's training, whose options the retraining takes


@pytest.fixture(params=BACKENDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fabulist.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


def _backend(url: str) -> str:
    return "sqlite" if url.startswith("sqlite:") else "postgresql"


@pytest.fixture
async def process_a(storage_url: str) -> AsyncIterator[App]:
    config = load_config(
        data={
            "storage": {"url": storage_url},
            "training": TRAINING,
            "cooldowns": {"continue_seconds": 0.0},
        },
        environ={},
    )
    async with open_app(config) as app:
        yield app


async def _run(*args: str, timeout: float) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=REPO, env=ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return int(process.returncode or 0), out.decode(errors="replace")


# -- bug 5: a member's forget cancels their trainings wherever they run -----------------------


def _history() -> list[HistoryMessage]:
    """400 messages of prose, each fifth one bob's (with his marker word), newest first."""
    words = prose_story(16_000, seed=3).decode().split()
    messages = []
    for i in range(400):
        author = BOB if i % 5 == 0 else ALICE
        text = "and " + " ".join(words[i * 40 : (i + 1) * 40])
        if author == BOB:
            text += f" {BOB_MARKER} whispered ."
        stamp = f"2026-03-{1 + i // 20:02d}T12:{i % 60:02d}:00+00:00"
        messages.append(HistoryMessage(1000 + i, author, text, stamp))
    return messages[::-1]


async def _wait_for(what: str, timeout: float, ready: Any) -> float:
    """Poll ``ready()`` (async) every 20 ms; the time it first held (monotonic)."""
    deadline = time.monotonic() + timeout
    while not await ready():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        await asyncio.sleep(0.02)
    return time.monotonic()


async def test_forget_user_in_another_process_cancels_the_training_here(
    process_a: App, storage_url: str, tmp_path: Path, ledger: Ledger
) -> None:
    service, store = process_a.service, process_a.store
    here = ChannelRef(GUILD, CHANNEL, "story")
    await service.set_history_learning(GUILD, ADMIN, True)
    # Version 1, learned from bob too: the deletion removes it and retrains (the policy).
    first = await service.train_history(here, ADMIN, _history(), TrainOptions(seed=1, **SHORT))
    assert (await service.wait_for_job(first.job.job_id)).state == "done"
    progress: list[JobProgress] = []
    learned = await service.train_history(
        here, ADMIN, _history(), TrainOptions(seed=1), progress.append
    )
    job_id = learned.job.job_id
    ended_at: list[float] = []
    ended = asyncio.ensure_future(service.wait_for_job(job_id))
    ended.add_done_callback(lambda _: ended_at.append(time.monotonic()))

    async def training() -> bool:
        assert not ended.done(), f"A's training ended before the test acted: {ended.result()}"
        return any(p.epoch >= 1 and p.state == "running" for p in progress)

    await _wait_for("A's training reached its first epoch", 180.0, training)

    cli_config = tmp_path / "cli.toml"
    training = "\n".join(f"{key} = {value!r}" for key, value in TRAINING.items())
    cli_config.write_text(f'[storage]\nurl = "{storage_url}"\n[training]\n{training}\n')
    cli = asyncio.ensure_future(
        _run("-m", "bot", "--config", str(cli_config), "forget-user", str(BOB), "--yes",
             timeout=300.0)
    )  # fmt: skip
    try:

        async def deleted() -> bool:
            assert not cli.done(), f"the CLI ended first: {cli.result()}"
            return not await store.user_channels(BOB, None)

        deleted_at = await _wait_for("the CLI deleted bob's messages", 120.0, deleted)
        await asyncio.wait({ended}, timeout=BOUND_SECONDS)
        assert ended.done(), (
            f"A's training on bob's deleted messages still runs {BOUND_SECONDS:.0f} s after "
            f"the CLI deleted them (epoch {progress[-1].epoch})"
        )
        latency = ended_at[0] - deleted_at
        result = ended.result()
        ledger.figure(
            f"forget-user in another process stopped a training here in {latency * 1000:.0f} ms "
            f"({_backend(storage_url)})"
        )
        assert result.state == "cancelled", result
        assert result.error is not None and "a member's data was deleted" in result.error
        code, out = await cli
    finally:
        if not cli.done():
            cli.cancel()
    assert code == 0 and "Retraining #" in out and " done." in out, out

    record = await store.job(job_id)
    assert record is not None and record.state == "cancelled" and record.model_id is None
    models = await store.list_models(CHANNEL)
    assert [m.version for m in models] == [2], "version 1 learned bob: the channel retrained"
    assert all(m.job_id != job_id for m in models), "A stored the model it trained on bob's text"
    for model in models:
        blob = await store.model_blob(model.id)
        assert blob is not None
        assert BOB_MARKER not in from_bytes(blob).vocabulary.symbols, model
    assert await service.job_progress(here) is None  # A holds no job of the channel any more


# -- bug 6: a filter change applies in every process ------------------------------------------


async def test_a_filter_changed_in_another_process_applies_here(
    process_a: App, storage_url: str, ledger: Ledger
) -> None:
    service, store = process_a.service, process_a.store
    here = ChannelRef(GUILD, CHANNEL, "story")
    await seed_model(store, CHANNEL, STORY.decode(), guild_id=GUILD)
    options = ContinueOptions(length=4, seed=1)
    await service.continue_story(here, PROMPT, options)  # A caches the server's (no) filters

    async def refused() -> bool:
        try:
            await service.continue_story(here, PROMPT, options)
        except InvalidOption as exc:
            assert "filters" in str(exc), exc
            return True
        return False

    async def accepted() -> bool:
        return not await refused()

    for verb, applied, count in (("add", refused, 1), ("remove", accepted, 0)):
        actor = asyncio.ensure_future(
            _run("-m", "tests.reliability.filter_actor", storage_url, str(GUILD), str(CHANNEL),
                 verb, "mice", timeout=120.0)
        )  # fmt: skip

        async def committed(count: int = count) -> bool:
            return len(await store.guild_filters(GUILD)) == count

        committed_at = await _wait_for(f"process B's {verb}", 120.0, committed)
        applied_at = await _wait_for(f"A applies the {verb} of 'mice'", BOUND_SECONDS, applied)
        latency = applied_at - committed_at
        ledger.figure(
            f"a filter {verb} in another process applied here in {latency * 1000:.0f} ms "
            f"({_backend(storage_url)})"
        )
        code, out = await actor
        assert code == 0 and out.strip().endswith(f"{verb} mice {count}"), out
