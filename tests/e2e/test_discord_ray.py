"""End to end on Ray: the real bot process with ``[workers] backend = "ray"`` against the fake
Discord, training on a real Ray cluster the test starts (``ray start --head`` on 127.0.0.1).

The tests run in file order and build on each other: #story is trained and continued; a long
training in #other shows live progress and is cancelled; one in #story loses its Ray worker to
SIGKILL (the previous model keeps answering), then one loses the bot's Ray driver process to
SIGKILL (a new driver takes the next training); the last kills the whole cluster (running and new
trainings fail clearly, the bot keeps answering). The bot process itself never imports Ray.
"""

# the harness API takes explicit timeouts so failures say what was awaited

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.fake_discord import FakeDiscord, FakeMessage, make_bot_process
from tests.fake_discord.fixtures import BotEnv
from tests.ray_cluster import TEST_ENV, RayHead, process_alive, ray_head_in_temp_dir
from tests.support import long_story

pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
ARTICLE = REPO / "data" / "belling-the-cat.txt"
CANCEL = "fabulist:cancel:"
OPENING = (
    "Had a general council to consider what measures they could take to outwit their common "
    "enemy, the cat."
)
TRAIN_TIMEOUT = 180.0
# Lines the bot logs at ERROR on purpose in these tests.
EXPECTED_ERRORS = (
    "the Ray worker of training job",
    "lost the Ray cluster",
    "Ray node of",
    "cannot reach the Ray cluster",
    "the Ray driver process",
)


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    with ray_head_in_temp_dir() as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(head: RayHead, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    fake = FakeDiscord()
    world = fake.default_world()
    await fake.start()
    config = {
        "discord": {"dev_guild_id": world.guild.id},
        "cooldowns": {"continue_seconds": 0.0},
        "workers": {"backend": "ray", "ray_address": head.address, "max_concurrent_jobs": 1},
    }
    bot = make_bot_process(fake, tmp_path_factory.mktemp("ray-bot"), config, env=TEST_ENV)
    try:
        await bot.start(wait_commands_for=world.guild.id, command_names=("train", "continue"))
        yield BotEnv(fake, world, bot)
    finally:
        drivers = [pid for pid in _children(bot.pid) if _has_ray(pid)] if bot.running else []
        code = await bot.stop()
        print(f"----- {bot.log_path} -----\n{bot.log_tail(200)}")
        await fake.stop()
    assert code == 0, f"the bot did not exit cleanly on SIGTERM (exit code {code})"
    outlived = [pid for pid in drivers if process_alive(pid)]
    assert drivers and not outlived, f"Ray driver processes {drivers}, still running: {outlived}"
    fake.assert_no_unknown_requests()
    fake.assert_no_violations()
    bot.assert_log_clean(allow=EXPECTED_ERRORS)


async def _train(env: BotEnv, channel_name: str, data: bytes, **options: object) -> FakeMessage:
    """/train as the admin; the channel's progress message (the one with Cancel)."""
    channel = env.world.channel if channel_name == "story" else env.world.other_channel
    attachment = env.fake.add_attachment("story.txt", data, channel=channel)
    handle = await env.fake.send_slash_command(
        "train", {"story": attachment, **options}, user=env.world.admin, channel=channel
    )
    reply = await handle.wait_reply(30.0)
    assert "Training job #" in reply.content, reply.content
    return await env.fake.wait_for_message(
        lambda m: m.kind == "channel" and any(c.startswith(CANCEL) for c in m.custom_ids()),
        channel=channel,
        timeout=15.0,
    )


async def _until(env: BotEnv, message: FakeMessage, pattern: str, what: str) -> None:
    await env.fake.wait_until(
        lambda: message if re.search(pattern, message.content) else None, TRAIN_TIMEOUT, what
    )


async def _live(env: BotEnv, channel_name: str) -> FakeMessage:
    """A long training that shows a real epoch (so it is running on a Ray worker)."""
    progress = await _train(env, channel_name, long_story(words=20_000))
    await _until(env, progress, r"epoch [1-9]", "live training progress")
    return progress


async def _continue_opening(env: BotEnv) -> None:
    handle = await env.fake.send_slash_command(
        "continue",
        {"prompt": "had a general", "temperature": 0.0},
        user=env.world.member,
        channel=env.world.channel,
    )
    reply = await handle.wait_reply(30.0)
    assert reply.content.startswith(OPENING), reply.content


def _ray_trainer_pids(head: RayHead) -> list[int]:
    """Ray worker processes of this test's cluster that are running a training task now."""
    return [pid for pid, args in head.processes() if args.startswith("ray::train")]


def _children(pid: int) -> list[int]:
    listing = subprocess.run(
        ["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True
    ).stdout
    return [
        int(p)
        for p, parent in (line.split() for line in listing.splitlines())
        if int(parent) == pid
    ]


def _has_ray(pid: int) -> bool:
    """Whether Ray's native module is loaded in process ``pid`` (``import ray`` maps it)."""
    try:
        return "_raylet" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:  # it ended meanwhile
        return False


async def test_the_cluster_is_joined_by_a_driver_process_before_the_loop_serves(
    env: BotEnv,
) -> None:
    # The bot waits for its Ray driver process's first connection before it logs in.
    log = env.bot.log_path.read_text()
    connected = log.find("connected to the Ray cluster")
    login = log.find("logging in using static token")
    assert 0 <= connected < login, log[-3000:]
    # The bot process never imports Ray (ray.init holds the GIL for 1-2 s): its driver does.
    assert not _has_ray(env.bot.pid)
    assert [pid for pid in _children(env.bot.pid) if _has_ray(pid)], "no Ray driver process"


async def test_train_on_ray_then_continue(env: BotEnv) -> None:
    progress = await _train(env, "story", ARTICLE.read_bytes(), seed=1)
    await _until(env, progress, r"^\*\*Finished\*\*", "the finished training message")
    await _continue_opening(env)


async def test_live_progress_and_cancel(env: BotEnv) -> None:
    progress = await _live(env, "other")
    assert re.search(r"loss \d+\.\d+ · accuracy \d+\.\d%", progress.content), progress.content
    assert re.search(r"about \S.* left|estimating the time left", progress.content), (
        progress.content
    )
    cancel_id = next(c for c in progress.custom_ids() if c.startswith(CANCEL))
    click = await env.fake.send_component_click(progress, cancel_id, env.world.admin)
    ack = await click.wait_reply(15.0)
    assert "Cancelling" in ack.content
    await _until(env, progress, r"^\*\*Cancelled\*\*(.|\n)*was cancelled", "the cancelled training")
    assert not progress.custom_ids()


async def _killed_then_recovered(env: BotEnv, progress: FakeMessage, pid: int, what: str) -> None:
    """SIGKILL ``pid`` while ``progress``'s training runs: the training fails saying so (the
    progress view says "Failed" first, then the result with its reason), the previous model
    keeps answering, and the next training runs (Ray replaces a worker; the bot, a driver)."""
    os.kill(pid, signal.SIGKILL)
    await _until(env, progress, rf"^\*\*Failed\*\*(.|\n)*{what}", f"the failed training ({what})")
    assert "previous model is still active" in progress.content, progress.content
    await _continue_opening(env)
    again = await _train(env, "other", ARTICLE.read_bytes(), seed=1)
    await _until(env, again, r"^\*\*Finished\*\*", f"a training after: {what}")


async def test_sigkilled_ray_worker_fails_the_job_and_the_model_keeps_answering(
    env: BotEnv, head: RayHead
) -> None:
    progress = await _live(env, "story")
    pids = _ray_trainer_pids(head)
    assert len(pids) == 1, pids
    await _killed_then_recovered(env, progress, pids[0], "Ray worker died")


async def test_sigkilled_driver_process_fails_the_job_and_a_new_driver_takes_the_next(
    env: BotEnv,
) -> None:
    progress = await _live(env, "story")
    drivers = [pid for pid in _children(env.bot.pid) if _has_ray(pid)]
    assert len(drivers) == 1, drivers
    await _killed_then_recovered(env, progress, drivers[0], "Ray driver process")
    assert [pid for pid in _children(env.bot.pid) if _has_ray(pid)] not in ([], drivers)


async def test_lost_cluster_fails_trainings_clearly_and_the_bot_keeps_answering(
    env: BotEnv, head: RayHead
) -> None:
    progress = await _live(env, "other")
    head.kill()
    await _until(
        env, progress, r"^\*\*Failed\*\*(.|\n)*(was lost|left the cluster)", "the lost training"
    )
    # A new training fails at once instead of waiting forever (its message says "Failed"; the
    # reason, "cannot be reached", is checked at the service level in test_ray_executor.py).
    refused = await _train(env, "other", ARTICLE.read_bytes(), seed=1)
    await _until(env, refused, r"^\*\*Failed\*\*", "a refused training")
    # Generation never needed the cluster.
    await _continue_opening(env)
