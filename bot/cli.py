"""Command line: ``python -m bot`` (installed as ``fabulist``).

    python -m bot [--config FILE] [--db FILE] [-v] COMMAND  (the three also after COMMAND)
      run [--shard-ids 0,1 --shard-count 4] connect to Discord (needs a token); serve those shards
      sync                                  register the slash commands (dev_guild_id: that guild)
      CHANNEL-COMMAND ... [--channel C]     train, continue, status, stories, ...: one row each
                                            of bot.adapters.commands (``fabulist --help``)
      migrate-storage --from URL [--to URL] [--replace]
                                            copy every row to another database and verify it
                                            (--to defaults to the configured storage)
      reshard --shard-count N               make N the shard count that answers (the set started
                                            with --shard-count N); prints the steps

Without ``--config``, ``./config.toml`` is read if it exists, else the defaults apply.
``--channel`` names an offline channel (default "console"); see ``bot.core.api.console_channel``.
``--channel-id ID`` (with ``--guild-id ID`` for a server channel) names a Discord channel instead,
e.g. to export a channel whose export is too large for Discord to upload.
Exit status: 0 ok, 1 a refused request or failed training, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bot.adapters.commands import COMMANDS
from bot.adapters.syntax import (
    Call,
    Confirmation,
    add_cli_arguments,
    channel_label,
    cli_values,
    invoke,
)
from bot.config import Config, check_relations, load_config
from bot.console import CONSOLE_COMMAND
from bot.core.api import ChannelRef
from bot.errors import ConfigError, StorageError, UserError

if TYPE_CHECKING:
    from bot.core.service import StoryService

logger = logging.getLogger(__name__)
# The channel commands of the table, then the console (which reads the table).
CLI_COMMANDS = {command.name: command for command in (*COMMANDS, CONSOLE_COMMAND) if command.cli}
DEFAULT_CONFIG = Path("config.toml")
# `run` keeps this file fresh while connected (the container's healthcheck reads its age).
HEALTH_FILE_ENV = "FABULIST_HEALTH_FILE"


def _channel_name(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("a channel name cannot be empty")
    return value


def _global_options(parser: argparse.ArgumentParser, default: object) -> None:
    """--config/--db/-v: accepted before the command and after it (``train F --db X``)."""
    parser.add_argument(
        "--config", type=Path, default=default, help="TOML config (default ./config.toml if any)"
    )
    parser.add_argument(
        "--db", type=Path, default=default, help="SQLite database (overrides storage.database)"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log at INFO level"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fabulist", description="Learn a story per channel and continue it."
    )
    _global_options(parser, None)
    parser.set_defaults(verbose=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        # SUPPRESS: given only before the command, the top-level value stands.
        _global_options(sub, argparse.SUPPRESS)
        return sub

    run = command("run", "connect to Discord")
    run.add_argument(
        "--shard-ids",
        type=_shard_ids,
        help="comma-separated shard ids this process serves (overrides discord.shard_ids)",
    )
    run.add_argument("--shard-count", type=int, help="total shards (discord.shard_count)")
    migrate = command("migrate-storage", "copy the whole database to another backend and verify it")
    migrate.add_argument("--from", dest="source", required=True, help="sqlite:///... or URL")
    migrate.add_argument(
        "--to", dest="target", help="postgresql://... (default: the configured storage)"
    )
    migrate.add_argument(
        "--replace", action="store_true", help="empty a target that already holds data"
    )
    command("sync", "register the slash commands with Discord")
    reshard = command(
        "reshard", "switch the shard processes that answer to another --shard-count (no downtime)"
    )
    reshard.add_argument(
        "--shard-count",
        type=int,
        required=True,
        help="the shard count of the new set of `run` processes, already started",
    )

    def with_channel(name: str, help: str) -> argparse.ArgumentParser:
        sub = command(name, help)
        which = sub.add_mutually_exclusive_group()
        which.add_argument(
            "--channel", type=_channel_name, default="console", help="offline channel name"
        )
        which.add_argument("--channel-id", type=int, help="a Discord channel's id (not --channel)")
        sub.add_argument("--guild-id", type=int, help="the Discord server's id (--channel-id)")
        return sub

    for entry in CLI_COMMANDS.values():  # the channel commands, shared with the console
        add_cli_arguments(with_channel(entry.name, entry.help), entry)
    return parser


def _shard_ids(text: str) -> tuple[int, ...]:
    try:
        ids = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("shard ids are comma-separated integers") from None
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError("shard ids are comma-separated integers >= 0")
    return ids


def resolve_config(config_path: Path | None, db: Path | None) -> Config:
    if config_path is None and DEFAULT_CONFIG.is_file():
        config_path = DEFAULT_CONFIG
    config = load_config(config_path)
    if db is not None:
        config = config.with_database(db)
    return config


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        config = resolve_config(args.config, args.db)
        if args.command == "run" and (args.shard_ids is not None or args.shard_count is not None):
            config = with_shards(config, args.shard_ids, args.shard_count)
    except ConfigError as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        return 2
    level = logging.INFO if args.verbose else getattr(logging, config.logging.level)
    if args.command not in ("run", "sync") and not args.verbose:
        level = max(level, logging.WARNING)  # the offline commands print their own output
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "guild_id", None) is not None and args.channel_id is None:
        sys.stderr.write("usage error: --guild-id needs --channel-id\n")
        return 2
    if args.command == "migrate-storage":
        return _migrate_storage(args, config, out)
    if args.command == "reshard":
        from bot.adapters.resharding import reshard_command

        return reshard_command(config, args.shard_count, out)
    if args.command in ("run", "sync"):
        if not config.discord.token:
            sys.stderr.write(
                "configuration error: discord.token is not set "
                "(set DISCORD_TOKEN or [discord] token in the config file)\n"
            )
            return 2
        from bot.discord_adapter.runner import (
            DiscordUnreachable,
            IntentNotEnabled,
            TokenRejected,
            run_bot,
            sync_commands,
        )

        health = os.environ.get(HEALTH_FILE_ENV, "").strip()
        try:
            if args.command == "run":
                run_bot(config, Path(health) if health else None)
            else:
                sync_commands(config)
        except DiscordUnreachable as exc:
            sys.stderr.write(f"cannot reach Discord ({exc}); check the network and try again\n")
            return 1
        except IntentNotEnabled as exc:
            sys.stderr.write(f"configuration error: {exc}\n")
            return 2
        except TokenRejected:
            sys.stderr.write(
                "configuration error: Discord refused the bot token; copy it again from the "
                "Developer Portal (Bot -> Reset Token) into DISCORD_TOKEN\n"
            )
            return 2
        return 0
    command = CLI_COMMANDS.get(args.command)
    confirm = None if command is None else command.confirm
    if confirm is not None and not args.yes and not _confirm(confirm, _channel(args), vars(args)):
        return 1
    terminated: list[int] = []
    try:
        return asyncio.run(_offline(args, config, out, terminated))
    except StorageError as exc:
        sys.stderr.write(f"database error: {exc}\n")
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        if command is not None and command.trains:
            sys.stderr.write(
                "Interrupted: the training stopped and its job is recorded as interrupted; the "
                "previous model (if any) stays active. The uploaded story stays in the channel's "
                "stories (`stories`), so a later --append trains on it: `remove ID` drops it.\n"
            )
        return 143 if terminated else 130


def with_shards(
    config: Config, shard_ids: tuple[int, ...] | None, shard_count: int | None
) -> Config:
    """``config`` serving the shards named on the command line (checked like the file's)."""
    discord = config.discord
    if shard_count is not None:
        discord = replace(discord, shard_count=shard_count)
    if shard_ids is not None:
        discord = replace(discord, shard_ids=shard_ids)
    updated = replace(config, discord=discord)
    check_relations(updated)
    return updated


def _migrate_storage(args: argparse.Namespace, config: Config, out: TextIO) -> int:
    from bot.app import migrate_storage, storage_url

    try:
        target = args.target or storage_url(config.storage)
        lines = asyncio.run(migrate_storage(args.source, target, replace=args.replace))
    except StorageError as exc:
        sys.stderr.write(f"migrate-storage: {exc}\n")
        return 1
    out.write("\n".join(lines) + "\n")
    return 0


def _stop_on_sigterm(terminated: list[int]) -> None:
    """SIGTERM works like Ctrl-C: the command is cancelled, so ``_offline``'s cleanup records
    a running training as interrupted (even where SIGINT is ignored, as for ``cmd &``)."""
    task = asyncio.current_task()
    if task is None:
        return

    def stop() -> None:
        terminated.append(signal.SIGTERM)
        task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not main thread
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)


def _confirm(confirm: Confirmation, channel: str | ChannelRef, values: dict[str, Any]) -> bool:
    """Ask before the command runs; refuse when no one can answer (no --yes)."""
    label = channel_label(channel)
    if not sys.stdin.isatty():
        sys.stderr.write(confirm.refusal.format(**{**values, "channel": label}) + "\n")
        return False
    try:
        answer = input(confirm.question.format(**{**values, "channel": label}) + " [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() in ("y", "yes"):
        return True
    sys.stderr.write(confirm.declined + "\n")
    return False


def _channel(args: argparse.Namespace) -> str | ChannelRef:
    """--channel-id names a Discord channel; else --channel a console channel (by name)."""
    if args.channel_id is None:
        return str(args.channel)
    return ChannelRef(guild_id=args.guild_id, channel_id=args.channel_id)


async def _offline(
    args: argparse.Namespace, config: Config, out: TextIO, terminated: list[int]
) -> int:
    _stop_on_sigterm(terminated)
    from bot.app import open_app

    if args.command != "console":
        # One worker is enough offline; the console may train more than once.
        config = replace(config, workers=replace(config.workers, count=1))
    # A removal may queue a retraining, which this process then runs to the end. Workers start
    # with the first training (TensorFlow takes seconds to import): a command that trains
    # nothing, or a refused upload, never waits for them.
    async with open_app(config, warm_workers=False) as app:
        return await _command(args, app.service, _channel(args), out)


async def _command(
    args: argparse.Namespace, service: StoryService, channel: str | ChannelRef, out: TextIO
) -> int:
    command = CLI_COMMANDS[args.command]
    call = Call(service, channel, cli_values(command, args), out, runs_to_end=True)
    try:
        reply = await invoke(command, call)
    except UserError as exc:
        # The service names the Discord command; here the user types the CLI's own.
        message = exc.message.replace("Use /train first.", "Use `python -m bot train FILE` first.")
        sys.stderr.write(message + "\n")
        return 1
    if reply is None:
        return 0
    out.write(reply.text + "\n")
    return 0 if reply.ok else 1
