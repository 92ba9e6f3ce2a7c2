"""The container's entrypoint running the real bot against the fake Discord (no Docker): the
health file while connected (the image's HEALTHCHECK), a clean SIGTERM, a refused token."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_discord import FakeDiscord
from tests.test_deploy import ENTRYPOINT, REPO, entrypoint

pytestmark = [pytest.mark.e2e]

TOKEN = "ZmFrZS1ib3Q.for-tests.only-a-fake-token"  # shaped like a real one: three parts


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord(token=TOKEN)
    server.default_world()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    server.assert_no_unknown_requests()
    server.assert_no_violations()


def _write_config(cwd: Path, fake: FakeDiscord) -> None:
    assert fake.world is not None
    # The image reads ./config.toml; the database is the default data/fabulist.sqlite3.
    (cwd / "config.toml").write_text(
        "[discord]\n"
        f'api_base_url = "{fake.api_base_url}"\n'
        f'gateway_url = "{fake.gateway_url}"\n'
        f"dev_guild_id = {fake.world.guild.id}\n"
    )


async def _start(cwd: Path, token: str) -> asyncio.subprocess.Process:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "FABULIST_PYTHON": sys.executable,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "DISCORD_TOKEN": token,
    }
    return await asyncio.create_subprocess_exec(
        "sh", str(ENTRYPOINT), cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def test_healthy_while_connected_then_clean_stop(tmp_path: Path, fake: FakeDiscord) -> None:
    _write_config(tmp_path, fake)
    proc = await _start(tmp_path, TOKEN)
    health = tmp_path / "data" / ".health"
    try:
        await fake.wait_for_identify(timeout=60.0)
        for _ in range(600):
            if health.exists():
                break
            await asyncio.sleep(0.1)
        assert health.exists(), "no health file once connected"
        checked = await asyncio.to_thread(entrypoint, tmp_path, "healthcheck")
        assert checked.returncode == 0, checked.stderr
        assert (tmp_path / "data" / "fabulist.sqlite3").is_file()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)  # exec'd: the bot itself gets it
        output, _ = await asyncio.wait_for(proc.communicate(), 60.0)
    assert proc.returncode == 0, output.decode()
    assert not health.exists()  # a stopped bot is not healthy
    assert (await asyncio.to_thread(entrypoint, tmp_path, "healthcheck")).returncode == 1


async def test_a_token_discord_refuses_stops_with_a_clear_message(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    _write_config(tmp_path, fake)
    proc = await _start(tmp_path, "d3Jvbmc.wrong.token-for-this-bot")
    output, _ = await asyncio.wait_for(proc.communicate(), 60.0)
    text = output.decode()
    assert proc.returncode == 2, text
    assert "Discord refused the bot token" in text and "Traceback" not in text
    assert "wrong.token" not in text  # never logged
