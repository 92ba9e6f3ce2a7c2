"""Command line: ``python -m bot`` (installed as ``fabulist``).

    python -m bot [--config FILE] [--db FILE] [-v] COMMAND  (the three also after COMMAND)
      run [--shard-ids 0,1 --shard-count 4] connect to Discord (needs a token); serve those shards
      sync                                  register the slash commands (dev_guild_id: that guild)
      train FILE [--channel C] [--append] [--layers N] [--n-input N] [--seed S] [--max-seconds T]
      continue WORDS... [--channel C] [--length N] [--temperature T] [--seed S] [--top-k K]
      status [--channel C]
      stories [--channel C]                 the channel's stories (id, file, uploader, size, date)
      stats [--channel C]                   symbols per story, vocabulary, versions, replies
      remove ID [--channel C]               remove a story and every model trained on it
      versions [--channel C]                the kept model versions (* = active)
      rollback [VERSION] [--channel C]      make a kept version active (default: the previous)
      export [--channel C] [--out FILE]     write the channel's export file
      import FILE [--channel C]             restore an export file into the channel
      forget [--channel C] [--yes]          asks first; --yes when stdin is not a terminal
      console [--channel C]                 interactive, with the slash commands' syntax
      migrate-storage --from URL [--to URL] [--replace]
                                            copy every row to another database and verify it
                                            (--to defaults to the configured storage)

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
from typing import TYPE_CHECKING, TextIO

from bot.adapters.commands import BY_CLI_NAME, QUERIES
from bot.config import Config, check_relations, load_config
from bot.errors import ConfigError, StorageError, UserError

if TYPE_CHECKING:
    from bot.core.api import ChannelRef
    from bot.core.service import StoryService

logger = logging.getLogger(__name__)
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

    def with_channel(name: str, help: str) -> argparse.ArgumentParser:
        sub = command(name, help)
        which = sub.add_mutually_exclusive_group()
        which.add_argument(
            "--channel", type=_channel_name, default="console", help="offline channel name"
        )
        which.add_argument("--channel-id", type=int, help="a Discord channel's id (not --channel)")
        sub.add_argument("--guild-id", type=int, help="the Discord server's id (--channel-id)")
        return sub

    train = with_channel("train", "train a story file into a channel")
    train.add_argument("file", type=Path, help="a UTF-8 text file, or an export file (.zip)")
    train.add_argument("--append", action="store_true", help="train on all the channel's stories")
    train.add_argument("--layers", type=int, help="LSTM layers (1 or 2; default from the config)")
    train.add_argument(
        "--n-input", type=int, help="symbols the model reads to predict the next (default 3)"
    )
    train.add_argument("--seed", type=int, help="random seed, for a repeatable training")
    train.add_argument(
        "--max-seconds",
        type=float,
        help="stop training after this many seconds",
    )
    cont = with_channel("continue", "continue a prompt with the channel's model")
    cont.add_argument("words", nargs="+", help="the prompt")
    cont.add_argument("--length", type=int, help="words and punctuation marks to add (default 32)")
    cont.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="0 picks the likeliest word (default); higher values sample more freely",
    )
    cont.add_argument("--seed", type=int, help="random seed for sampling (temperature > 0)")
    cont.add_argument("--top-k", type=int, help="sample only among the K likeliest words")
    for query in QUERIES:  # the read-only commands, shared with the console
        with_channel(query.cli_name, query.help)
    remove = with_channel("remove", "remove a story and the models trained on it")
    remove.add_argument("story_id", type=int, metavar="ID", help="the story's number (stories)")
    rollback = with_channel("rollback", "make a kept model version active")
    rollback.add_argument(
        "version", type=int, nargs="?", help="the version (default: the previous one)"
    )
    export = with_channel("export", "write the channel's export file")
    export.add_argument(
        "--out", type=Path, help="file to write (default: <channel>-vN.fabulist.zip)"
    )
    imp = with_channel("import", "restore an export file into the channel")
    imp.add_argument("file", type=Path, help="an export file (.fabulist.zip)")
    forget = with_channel("forget", "delete the channel's stories, models and jobs")
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    with_channel("console", "interactive console with the slash commands' syntax")
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
    if args.command in ("run", "sync"):
        if not config.discord.token:
            sys.stderr.write(
                "configuration error: discord.token is not set "
                "(set DISCORD_TOKEN or [discord] token in the config file)\n"
            )
            return 2
        from bot.discord_adapter.runner import (
            DiscordUnreachable,
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
        except TokenRejected:
            sys.stderr.write(
                "configuration error: Discord refused the bot token; copy it again from the "
                "Developer Portal (Bot -> Reset Token) into DISCORD_TOKEN\n"
            )
            return 2
        return 0
    if args.command == "forget" and not args.yes and not _confirm_forget(args):
        return 1
    terminated: list[int] = []
    try:
        return asyncio.run(_offline(args, config, out, terminated))
    except StorageError as exc:
        sys.stderr.write(f"database error: {exc}\n")
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        if args.command in ("train", "remove"):
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


def _confirm_forget(args: argparse.Namespace) -> bool:
    """Ask before ``forget`` deletes everything; refuse when no one can answer (no --yes)."""
    label = args.channel if args.channel_id is None else f"<#{args.channel_id}>"
    if not sys.stdin.isatty():
        sys.stderr.write(
            f"forget deletes every story, model and job of channel {label}: "
            "add --yes to confirm (stdin is not a terminal, so I cannot ask).\n"
        )
        return False
    try:
        answer = input(f"Delete every story, model and job of channel {label}? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() in ("y", "yes"):
        return True
    sys.stderr.write("Nothing was deleted.\n")
    return False


async def _offline(
    args: argparse.Namespace, config: Config, out: TextIO, terminated: list[int]
) -> int:
    _stop_on_sigterm(terminated)
    from bot.app import open_app
    from bot.core.api import ChannelRef

    # --channel-id names a Discord channel; else --channel a console channel (by name).
    channel: str | ChannelRef = args.channel
    if args.channel_id is not None:
        channel = ChannelRef(guild_id=args.guild_id, channel_id=args.channel_id)
    if args.command != "console":
        # One worker is enough offline; the console may train more than once.
        config = replace(config, workers=replace(config.workers, count=1))
    # A removal may queue a retraining, which this process then runs to the end. Workers start
    # with the first training (TensorFlow takes seconds to import): a command that trains
    # nothing, or a refused upload, never waits for them.
    async with open_app(config, warm_workers=False) as app:
        return await _command(args, app.service, channel, out)


async def _command(
    args: argparse.Namespace, service: StoryService, channel: str | ChannelRef, out: TextIO
) -> int:
    from bot.adapters.commands import CONSOLE_MEMBER, channel_label, resolve_channel
    from bot.console import (
        Console,
        continue_text,
        export_file,
        import_file,
        rollback_text,
        train_file,
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
        elif args.command in BY_CLI_NAME:
            out.write(await BY_CLI_NAME[args.command].render(service, channel) + "\n")
        elif args.command == "remove":
            return await _remove(service, channel, args.story_id, out)
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
        # The service names the Discord command; here the user types the CLI's own.
        message = exc.message.replace("Use /train first.", "Use `python -m bot train FILE` first.")
        sys.stderr.write(message + "\n")
        return 1


async def _remove(
    service: StoryService, channel: str | ChannelRef, story_id: int, out: TextIO
) -> int:
    """Remove a story; if that queues a retraining, show it through to the end."""
    from bot.adapters.commands import CONSOLE_MEMBER, resolve_channel
    from bot.adapters.text import removal_text
    from bot.console import ProgressBar

    removal = await service.remove_story(
        resolve_channel(channel), CONSOLE_MEMBER, story_id, on_progress=ProgressBar(out)
    )
    out.write(removal_text(removal) + "\n")
    if removal.retraining is None:
        return 0
    result = await service.wait_for_job(removal.retraining.job_id)
    out.write(f"Retraining {result.state}" + (f": {result.error}" if result.error else ".") + "\n")
    return 0 if result.state == "done" else 1
