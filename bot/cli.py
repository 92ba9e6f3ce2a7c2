"""Command line: ``python -m bot`` (installed as ``fabulist``).

    python -m bot [--config FILE] [--db FILE] [-v] COMMAND
      run                                   connect to Discord (needs a token)
      sync                                  register the slash commands (dev_guild_id: that guild)
      train FILE [--channel C] [--append] [--layers N] [--n-input N] [--seed S] [--max-seconds T]
      continue WORDS... [--channel C] [--length N] [--temperature T] [--seed S] [--top-k K]
      status [--channel C]
      stories [--channel C]                 the channel's stories (id, file, uploader, size, date)
      remove ID [--channel C]               remove a story and every model trained on it
      versions [--channel C]                the kept model versions (* = active)
      rollback [VERSION] [--channel C]      make a kept version active (default: the previous)
      export [--channel C] [--out FILE]     write the channel's export file
      import FILE [--channel C]             restore an export file into the channel
      forget [--channel C]
      console [--channel C]                 interactive, with the slash commands' syntax

Without ``--config``, ``./config.toml`` is read if it exists, else the defaults apply.
``--channel`` names an offline channel (default "console"); see ``bot.core.api.console_channel``.
``--channel-id ID`` (with ``--guild-id ID`` for a server channel) names a Discord channel instead,
e.g. to export a channel whose export is too large for Discord to upload.
Exit status: 0 ok, 1 a refused request or failed training, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bot.config import Config, load_config
from bot.errors import ConfigError, StorageError, UserError

if TYPE_CHECKING:
    from bot.core.api import ChannelRef
    from bot.core.service import StoryService

logger = logging.getLogger(__name__)
DEFAULT_CONFIG = Path("config.toml")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fabulist", description="Learn a story per channel and continue it."
    )
    parser.add_argument("--config", type=Path, help="TOML config (default ./config.toml if any)")
    parser.add_argument("--db", type=Path, help="SQLite database (overrides storage.database)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="connect to Discord")
    commands.add_parser("sync", help="register the slash commands with Discord")

    def with_channel(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--channel", default="console", help="offline channel name")
        sub.add_argument("--channel-id", type=int, help="a Discord channel's id (not --channel)")
        sub.add_argument("--guild-id", type=int, help="the Discord server's id (--channel-id)")
        return sub

    train = with_channel("train", "train a story file into a channel")
    train.add_argument("file", type=Path)
    train.add_argument("--append", action="store_true", help="train on all the channel's stories")
    train.add_argument("--layers", type=int)
    train.add_argument("--n-input", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--max-seconds", type=float)
    cont = with_channel("continue", "continue a prompt with the channel's model")
    cont.add_argument("words", nargs="+")
    cont.add_argument("--length", type=int)
    cont.add_argument("--temperature", type=float, default=0.0)
    cont.add_argument("--seed", type=int)
    cont.add_argument("--top-k", type=int)
    with_channel("status", "show the channel's story card")
    with_channel("stories", "list the channel's stories")
    remove = with_channel("remove", "remove a story and the models trained on it")
    remove.add_argument("story_id", type=int, metavar="ID")
    with_channel("versions", "list the kept model versions")
    rollback = with_channel("rollback", "make a kept model version active")
    rollback.add_argument("version", type=int, nargs="?")
    export = with_channel("export", "write the channel's export file")
    export.add_argument(
        "--out", type=Path, help="file to write (default: <channel>-vN.fabulist.zip)"
    )
    imp = with_channel("import", "restore an export file into the channel")
    imp.add_argument("file", type=Path)
    with_channel("forget", "delete the channel's stories, models and jobs")
    with_channel("console", "interactive console with the slash commands' syntax")
    return parser


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
    if args.command in ("run", "sync"):
        if not config.discord.token:
            sys.stderr.write(
                "configuration error: discord.token is not set "
                "(set DISCORD_TOKEN or [discord] token in the config file)\n"
            )
            return 2
        from bot.discord_adapter.runner import run_bot, sync_commands

        (run_bot if args.command == "run" else sync_commands)(config)
        return 0
    try:
        return asyncio.run(_offline(args, config, out))
    except StorageError as exc:
        sys.stderr.write(f"database error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


async def _offline(args: argparse.Namespace, config: Config, out: TextIO) -> int:
    from bot.app import open_app
    from bot.core.api import ChannelRef

    # --channel-id names a Discord channel; else --channel a console channel (by name).
    channel: str | ChannelRef = args.channel
    if args.channel_id is not None:
        channel = ChannelRef(guild_id=args.guild_id, channel_id=args.channel_id)
    if args.command != "console":
        # One worker is enough offline; the console may train more than once.
        config = replace(config, workers=replace(config.workers, count=1))
    # A removal may queue a retraining, which this process then runs to the end.
    warm = args.command in ("train", "console", "remove")
    async with open_app(config, warm_workers=warm) as app:
        return await _command(args, app.service, channel, out)


async def _command(
    args: argparse.Namespace, service: StoryService, channel: str | ChannelRef, out: TextIO
) -> int:
    from bot.console import (
        CONSOLE_MEMBER,
        Console,
        channel_label,
        continue_text,
        export_file,
        import_file,
        resolve_channel,
        rollback_text,
        status_text,
        stories_text,
        train_file,
        versions_text,
    )
    from bot.core.api import ContinueOptions, TrainOptions

    try:
        if args.command == "train":
            options = TrainOptions(
                layers=args.layers,
                n_input=args.n_input,
                seed=args.seed,
                max_seconds=args.max_seconds,
                mode="append" if args.append else "replace",
            )
            ok = await train_file(service, channel, args.file, options, out)
            return 0 if ok else 1
        if args.command == "continue":
            options_c = ContinueOptions(
                length=args.length, temperature=args.temperature, seed=args.seed, top_k=args.top_k
            )
            out.write(await continue_text(service, channel, " ".join(args.words), options_c))
            out.write("\n")
        elif args.command == "status":
            out.write(await status_text(service, channel) + "\n")
        elif args.command == "stories":
            out.write(await stories_text(service, channel) + "\n")
        elif args.command == "remove":
            return await _remove(service, channel, args.story_id, out)
        elif args.command == "versions":
            out.write(await versions_text(service, channel) + "\n")
        elif args.command == "rollback":
            version = None if args.version is None else str(args.version)
            out.write(await rollback_text(service, channel, version) + "\n")
        elif args.command == "export":
            await export_file(service, channel, args.out, out)
        elif args.command == "import":
            await import_file(service, channel, args.file, out)
        elif args.command == "forget":
            await service.forget(resolve_channel(channel), CONSOLE_MEMBER)
            out.write(f"Forgot channel {channel_label(channel)}.\n")
        elif args.command == "console":
            await Console(service, out, channel).run()
        return 0
    except UserError as exc:
        sys.stderr.write(exc.message + "\n")
        return 1


async def _remove(
    service: StoryService, channel: str | ChannelRef, story_id: int, out: TextIO
) -> int:
    """Remove a story; if that queues a retraining, show it through to the end."""
    from bot.adapters.text import removal_text
    from bot.console import CONSOLE_MEMBER, ProgressBar, resolve_channel

    removal = await service.remove_story(
        resolve_channel(channel), CONSOLE_MEMBER, story_id, on_progress=ProgressBar(out)
    )
    out.write(removal_text(removal) + "\n")
    if removal.retraining is None:
        return 0
    result = await service.wait_for_job(removal.retraining.job_id)
    out.write(f"Retraining {result.state}" + (f": {result.error}" if result.error else ".") + "\n")
    return 0 if result.state == "done" else 1
