"""Entry points for ``python -m bot run`` and ``python -m bot sync``."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl

from bot.discord_adapter.client import create_bot
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.app import TrainingExecutor
    from bot.config import Config
    from bot.discord_adapter.client import FabulistBot

log = logging.getLogger(__name__)


def apply_endpoints(config: Config) -> None:
    """Point discord.py at another API / gateway (a self-hosted proxy or the test fake)."""
    settings = config.discord
    if settings.api_base_url:
        discord.http.Route.BASE = settings.api_base_url.rstrip("/")
        log.info("Discord API base URL: %s", discord.http.Route.BASE)
    if settings.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)
        log.info("Discord gateway URL: %s", settings.gateway_url)


class LoopLagMonitor:
    """Measures event-loop lag: how late a 10 ms sleep wakes up, summarised at shutdown.

    ``run`` logs one INFO line when the bot stops (``event loop lag: max X ms, p99 Y ms over N
    samples``) and a WARNING whenever one wake-up is over 100 ms late, so an operator sees a
    blocked loop. ``kill -USR1 <pid>`` logs the same line for the time since the previous
    SIGUSR1 and starts a new period. Samples go into 1 ms buckets, so memory stays constant.
    """

    INTERVAL = 0.010
    WARN_SECONDS = 0.100

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.buckets: list[int] = [0] * 1001  # 0..999 ms, then "1 s or more"
        self.samples = 0
        self.max_seconds = 0.0

    def report_and_reset(self) -> None:
        log.info("%s (since the last report)", self.summary())
        self.reset()

    def add(self, lag: float) -> None:
        self.samples += 1
        self.max_seconds = max(self.max_seconds, lag)
        self.buckets[min(1000, max(0, int(lag * 1000)))] += 1
        if lag > self.WARN_SECONDS:
            log.warning("the event loop was blocked for %.0f ms", lag * 1000)

    def p99_ms(self) -> float:
        target = 0.99 * self.samples
        seen = 0
        for ms, count in enumerate(self.buckets):
            seen += count
            if seen >= target and count:
                return float(ms + 1)  # the bucket's upper edge: never flatters
        return 0.0

    def summary(self) -> str:
        return (
            f"event loop lag: max {self.max_seconds * 1000:.1f} ms, p99 {self.p99_ms():.0f} ms "
            f"over {self.samples} samples"
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.INTERVAL)
            self.add(max(0.0, loop.time() - start - self.INTERVAL))


def _token(config: Config) -> str:
    token = config.discord.token
    if not token:
        raise ConfigError("discord.token is not set (set it in the config file or DISCORD_TOKEN)")
    return token


def _ensure_logging(config: Config) -> None:
    if not logging.getLogger().handlers:
        discord.utils.setup_logging(level=logging.getLevelName(config.logging.level))


def _prepare(config: Config) -> str:
    """Return the token (a missing one fails first), after setting up logging and endpoints."""
    token = _token(config)
    _ensure_logging(config)
    apply_endpoints(config)
    return token


class DiscordUnreachable(Exception):
    """Discord's API could not be reached (no network, DNS, a wrong api_base_url)."""


class IntentNotEnabled(Exception):
    """``discord.message_content`` is on, but Discord refused the intent (Developer Portal)."""


INTENT_HELP = (
    "discord.message_content is true, but Discord refused the Message Content intent: switch "
    "it on in the Developer Portal (Applications > your bot > Bot > Privileged Gateway Intents "
    "> Message Content Intent), or set message_content = false under [discord]"
)


class TokenRejected(Exception):
    """Discord refused the bot token (HTTP 401 at login): restarting will not help."""


# The health file (``FABULIST_HEALTH_FILE``, set by the container's entrypoint): rewritten this
# often while the gateway session is ready; the container's healthcheck reads its age.
HEALTH_INTERVAL_SECONDS = 15.0


class HealthFile:
    """Touches ``path`` every ``interval`` seconds while ``bot`` is connected and ready."""

    def __init__(self, path: Path, interval: float = HEALTH_INTERVAL_SECONDS) -> None:
        self.path = path
        self.interval = interval

    async def run(self, bot: FabulistBot) -> None:
        try:
            while True:
                ready = bot.is_ready() and not bot.is_closed()
                if ready:
                    await asyncio.to_thread(self._touch)
                # Until the first connection, look every second: healthy as soon as connected.
                await asyncio.sleep(self.interval if ready else 1.0)
        finally:
            self.path.unlink(missing_ok=True)

    def _touch(self) -> None:
        try:
            self.path.write_text(f"{time.time():.0f}\n", encoding="utf-8")
        except OSError as exc:
            log.warning("cannot write the health file %s: %s", self.path, exc)


def _reaching_discord(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main``; a connection failure becomes one DiscordUnreachable, not a traceback."""
    try:
        asyncio.run(main)
    except discord.PrivilegedIntentsRequired:
        raise IntentNotEnabled(INTENT_HELP) from None
    except discord.LoginFailure:
        raise TokenRejected("Discord refused the bot token") from None
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise DiscordUnreachable(f"{discord.http.Route.BASE}: {reason}") from None


def run_bot(config: Config, health_file: Path | None = None) -> None:
    """Run the bot until SIGTERM/SIGINT, then close the gateway, the service and the database.

    DiscordUnreachable if Discord cannot be reached at start (the caller exits non-zero; a
    supervisor such as systemd restarts it with its own backoff); TokenRejected if Discord
    refuses the token. ``health_file``: kept fresh while connected (see ``HealthFile``).
    """
    token = _prepare(config)
    from bot.app import open_executor

    # Before the loop exists: the executor's blocking start-up (the Ray executor starts its driver
    # process and waits for its first connection to the cluster) delays nothing that serves.
    executor = open_executor(config)
    executor.prepare()
    _reaching_discord(_run(config, token, executor, health_file))


async def _run(
    config: Config, token: str, executor: TrainingExecutor, health_file: Path | None = None
) -> None:
    from bot.app import open_app

    # The bot starts the service in setup_hook; its close() calls app.shutdown (the service,
    # then the trainers) before the connection closes; open_app closes the store last.
    async with open_app(
        config, start=False, executor=executor, close_executor=True, serving=True
    ) as app:
        bot = create_bot(config, app.service, shutdown=app.shutdown)
        loop = asyncio.get_running_loop()
        closing: list[asyncio.Task[None]] = []

        def request_stop(signum: signal.Signals) -> None:
            log.info("received %s, shutting down", signum.name)
            if not closing:
                closing.append(loop.create_task(bot.close()))

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, request_stop, signum)
        monitor = LoopLagMonitor()
        probe = loop.create_task(monitor.run(), name="loop-lag-monitor")
        loop.add_signal_handler(signal.SIGUSR1, monitor.report_and_reset)
        health = None
        if health_file is not None:
            health = loop.create_task(HealthFile(health_file).run(bot), name="health-file")
        try:
            async with bot:
                await bot.start(token)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                loop.remove_signal_handler(signum)
            if closing:
                await closing[0]
            probe.cancel()
            if health is not None:
                health.cancel()
                await asyncio.gather(health, return_exceptions=True)
            log.info("%s", monitor.summary())
    log.info("stopped")


def sync_commands(config: Config) -> None:
    """Log in (no gateway connection), replace the global command set, exit."""
    _reaching_discord(_sync(config, _prepare(config)))


async def _sync(config: Config, token: str) -> None:
    bot: FabulistBot = create_bot(config, None, sync_dev_guild=False)
    async with bot:
        await bot.login(token)
        synced = await bot.tree.sync()
        log.info(
            "synced %d global commands: %s",
            len(synced),
            ", ".join(f"/{command.name}" for command in synced),
        )
