"""pytest fixtures for end-to-end tests. Import them in a conftest.py:

from tests.fake_discord.fixtures import bot, bot_config, fake_discord, start_bot  # noqa: F401
"""

# ruff: noqa: ASYNC109  # the harness API takes explicit timeouts so failures say what was awaited

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fake_discord.bot_process import BotProcess, make_bot_process
from tests.fake_discord.server import FakeDiscord, World

StartBot = Callable[..., Awaitable[BotProcess]]


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A started fake Discord with ``fake.world`` (guild, #story, #other, owner, admin, member).

    Teardown fails the test on requests to unknown routes and on API-rule violations
    (set ``fake.fail_on_violations = False`` in tests that provoke them on purpose).
    """
    fake = FakeDiscord()
    fake.default_world()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
    fake.assert_no_unknown_requests()
    if fake.fail_on_violations:
        fake.assert_no_violations()


@pytest.fixture
def bot_config(fake_discord: FakeDiscord) -> dict[str, Any]:
    """Extra config merged over the fake's [discord]/[database] keys. Override in a conftest."""
    assert fake_discord.world is not None
    return {"discord": {"dev_guild_id": fake_discord.world.guild.id}}


@pytest.fixture
async def start_bot(
    fake_discord: FakeDiscord, tmp_path: Path, bot_config: dict[str, Any]
) -> AsyncIterator[StartBot]:
    """Factory: ``await start_bot(config=None, *, args=("run",), wait_commands=True, name="bot")``.

    Writes ``tmp_path/<name>.toml`` (fake URLs + token + ``database.path`` + ``bot_config`` +
    ``config``), runs ``python -m bot --config it run``, waits for IDENTIFY and, when
    ``wait_commands`` is true, for the command sync to the world's guild. All processes are
    stopped at teardown; their output is printed (pytest shows it when the test fails).
    """
    processes: list[BotProcess] = []

    async def start(
        config: Mapping[str, Any] | None = None,
        *,
        args: tuple[str, ...] = ("run",),
        wait_commands: bool = True,
        command_names: tuple[str, ...] = (),
        name: str = "bot",
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> BotProcess:
        from tests.fake_discord.bot_process import merge

        merged = merge(bot_config, config or {})
        proc = make_bot_process(fake_discord, tmp_path, merged, args=args, env=env, name=name)
        processes.append(proc)
        assert fake_discord.world is not None
        await proc.start(
            wait_commands_for=fake_discord.world.guild.id if wait_commands else False,
            command_names=command_names,
            timeout=timeout,
        )
        return proc

    try:
        yield start
    finally:
        for proc in processes:
            await proc.stop()
            print(f"----- {proc.log_path} -----\n{proc.log_tail(200)}")


@pytest.fixture
async def bot(start_bot: StartBot) -> BotProcess:
    """The bot running with the default config, connected and with commands synced."""
    return await start_bot()


@dataclass
class BotEnv:
    """One fake Discord and one bot process shared by a test module (see ``module_bot_env``)."""

    fake: FakeDiscord
    world: World
    bot: BotProcess
    shared: dict[str, object] = field(default_factory=dict)  # state the ordered tests pass on


@contextlib.asynccontextmanager
async def module_bot_env(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    config: Mapping[str, Any],
    *,
    command_names: Sequence[str] = (),
    dump_messages: bool = False,
    allow_privileged_intents: bool = False,
    prepare: Callable[[FakeDiscord, Path], Awaitable[None]] | None = None,
) -> AsyncIterator[BotEnv]:
    """Start a fake Discord and the bot (``config`` over the dev-guild key) for a whole module.

    For module-scoped fixtures, where starting TensorFlow workers once pays off::

        @pytest_asyncio.fixture(scope="module", loop_scope="module")
        async def env(tmp_path_factory):
            async with module_bot_env(tmp_path_factory, "lib", CONFIG) as env:
                yield env

    On exit the bot gets SIGTERM and must exit with 0; its log is printed (with every bot
    message's history when ``dump_messages``), and unknown routes, API-rule violations and
    errors in the bot's log fail the module. ``prepare(fake, tmp_path)`` runs before the bot
    starts (more guilds, a ``sync`` process for global commands).
    """
    fake = FakeDiscord(allow_privileged_intents=allow_privileged_intents)
    world = fake.default_world()
    await fake.start()
    tmp_path = tmp_path_factory.mktemp(name)
    if prepare is not None:
        await prepare(fake, tmp_path)
    from tests.fake_discord.bot_process import merge

    bot = make_bot_process(
        fake, tmp_path, merge({"discord": {"dev_guild_id": world.guild.id}}, config)
    )
    try:
        await bot.start(wait_commands_for=world.guild.id, command_names=command_names)
        yield BotEnv(fake, world, bot)
    finally:
        code = await bot.stop()
        print(f"----- {bot.log_path} -----\n{bot.log_tail(200)}")
        if dump_messages:
            for message in fake.messages(include_deleted=True):
                print(f"----- message {message.id} ({message.kind}, flags {message.flags})")
                for state in message.history:
                    print("  ", state)
        await fake.stop()
    assert code == 0, f"the bot did not exit cleanly on SIGTERM (exit code {code})"
    fake.assert_no_unknown_requests()
    fake.assert_no_violations()
    bot.assert_log_clean()
