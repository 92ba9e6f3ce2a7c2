"""Offline console: the slash commands' syntax against the same database, no Discord needed.

    /train data/belling-the-cat.txt [mode:append] [layers:2] [n_input:4] [seed:1] [max_seconds:60]
    /train FILE.fabulist.zip          (an export file is imported)
    /continue had a general [length:32] [temperature:0.8] [seed:7] [top_k:10]
    /story show   /story list   /story remove ID   /story versions   /story rollback [VERSION]
    /story export [FILE]   /story import FILE
    /status   /cancel   /forget   /plot FILE.png   /channel NAME   /help   /quit

``/stories``, ``/versions`` and ``/rollback`` still work as short forms. Console channels map
to stable ids via ``bot.core.api.console_channel`` (guild None). The console
user is an admin of every console channel.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from bot.adapters.text import import_text, removal_text, retrain_reason_text
from bot.core.api import (
    ChannelRef,
    ContinueOptions,
    JobProgress,
    Member,
    TrainOptions,
    console_channel,
)
from bot.core.service import StoryService
from bot.display import display_prose, format_bytes, training_fraction, vocabulary_text
from bot.errors import UserError

HELP = __doc__.split("\n\n")[1] if __doc__ else ""
CONSOLE_MEMBER = Member(user_id=0, display_name="console", is_admin=True)
_TRAIN_KEYS = {"mode": str, "layers": int, "n_input": int, "seed": int, "max_seconds": float}
_CONTINUE_KEYS = {"length": int, "temperature": float, "seed": int, "top_k": int}


def resolve_channel(channel: str | ChannelRef) -> ChannelRef:
    """A console channel by name, or a channel given by id (``--channel-id``)."""
    return console_channel(channel) if isinstance(channel, str) else channel


def channel_label(channel: str | ChannelRef) -> str:
    if isinstance(channel, str):
        return channel
    return channel.name or f"<#{channel.channel_id}>"


class ProgressBar:
    """Renders JobProgress to a terminal (one updating line) or a log (a line per second)."""

    def __init__(self, out: TextIO, width: int = 30) -> None:
        self.out = out
        self.width = width
        self.tty = out.isatty()
        self._last = 0.0
        self._shown = False

    def __call__(self, progress: JobProgress) -> None:
        if progress.state == "queued":
            line = f"queued at position {progress.queue_position}"
        else:
            share = training_fraction(
                progress.epoch, progress.max_epochs, progress.elapsed_seconds, progress.eta_seconds
            )
            if progress.state == "done":
                share = 1.0  # the ETA counts epochs; a story can be learned long before
            filled = round(share * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            parts = [f"[{bar}] epoch {progress.epoch}/{progress.max_epochs}"]
            if progress.loss is not None:
                parts.append(f"loss {progress.loss:.3f}")
            if progress.learnable_accuracy is not None:
                parts.append(f"accuracy {progress.learnable_accuracy:.1%}")
            parts.append(f"{progress.elapsed_seconds:.1f} s")
            if progress.state not in ("running", "cancelling"):
                parts.append(progress.state)
            line = "  ".join(parts)
        final = progress.state not in ("queued", "running", "cancelling")
        if self.tty:
            self.out.write("\r" + line.ljust(79))
            if final:
                self.out.write("\n")
            self.out.flush()
            return
        now = asyncio.get_running_loop().time()
        if final or now - self._last >= 1.0 or not self._shown:
            self._last = now
            self._shown = True
            self.out.write(line + "\n")
            self.out.flush()


def parse_options(words: list[str], keys: dict[str, type]) -> tuple[list[str], dict[str, Any]]:
    """Split ``key:value`` options (only known keys) from the other words."""
    rest: list[str] = []
    options: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition(":")
        if sep and key in keys and value:
            try:
                options[key] = keys[key](value)
            except ValueError:
                raise UserError(f"{key} must be a {keys[key].__name__}, not {value!r}.") from None
        else:
            rest.append(word)
    return rest, options


async def train_file(
    service: StoryService,
    channel_name: str | ChannelRef,
    path: Path,
    options: TrainOptions,
    out: TextIO,
) -> bool:
    """Train ``path`` into a console channel, showing progress; True on success."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        out.write(f"Cannot read {path}: {exc.strerror}\n")
        return False
    channel = resolve_channel(channel_name)
    bar = ProgressBar(out)
    # An export file is imported by train itself (the job is done at once, result.imported).
    job = await service.train(channel, CONSOLE_MEMBER, path.name, data, options, on_progress=bar)
    result = await service.wait_for_job(job.job_id)
    if result.imported and result.state == "done":
        count = len(job.story_ids)
        out.write(
            f"Imported {count} stor{'y' if count == 1 else 'ies'} and a model from {path.name}; "
            f"it is now version {result.model_version}.\n"
        )
        return True
    if result.state == "done" and result.figures is not None:
        f = result.figures
        out.write(
            f"Trained model version {result.model_version} on {path.name}: {f.symbols} symbols, "
            f"vocabulary {f.vocabulary_size}, {f.epochs} epochs in {f.seconds:.1f} s, "
            f"accuracy on learnable windows {f.learnable_accuracy:.1%}.\n"
        )
        return True
    out.write(f"Training {result.state}: {result.error}\n")
    return False


async def continue_text(
    service: StoryService, channel_name: str | ChannelRef, prompt: str, options: ContinueOptions
) -> str:
    result = await service.continue_story(resolve_channel(channel_name), prompt, options)
    share = (
        "" if result.original_share is None else f"  [{result.original_share:.0%} from the story]"
    )
    return display_prose(result.text) + share


async def status_text(service: StoryService, channel_name: str | ChannelRef) -> str:
    card = await service.story_card(resolve_channel(channel_name))
    lines = [f"Channel {channel_label(channel_name)}:"]
    if card.has_model:
        lines.append(
            f"  model version {card.model_version}, trained {card.trained_at} on "
            f"{card.story_filename} ({card.stories} stor{'y' if card.stories == 1 else 'ies'})"
        )
        vocabulary = vocabulary_text(
            card.vocabulary_size, card.vocabulary_cap, card.vocabulary_covered_share
        )
        lines.append(
            f"  {card.symbols} symbols, vocabulary {vocabulary}, "
            f"{card.epochs} epochs in {card.training_seconds or 0:.1f} s"
        )
        if card.learnable_accuracy is not None:
            lines.append(f"  accuracy on learnable windows {card.learnable_accuracy:.1%}")
        if card.val_accuracy is not None:
            lines.append(
                f"  held-out accuracy {card.val_accuracy:.1%}, perplexity {card.val_perplexity:.1f}"
            )
    else:
        lines.append("  no trained model yet")
    if card.job is not None:
        lines.append(
            f"  training job #{card.job.job_id}: {card.job.state}, "
            f"epoch {card.job.epoch}/{card.job.max_epochs}"
        )
    if card.notice is not None:
        lines.append(f"  {retrain_reason_text(card.notice)}")
    if card.last_job is not None and card.last_job.state != "done":
        lines.append(f"  last training {card.last_job.state}: {card.last_job.error}")
    return "\n".join(lines)


async def stories_text(service: StoryService, channel_name: str | ChannelRef) -> str:
    stories = await service.list_stories(resolve_channel(channel_name))
    if not stories:
        return f"Channel {channel_label(channel_name)} has no stories."
    return "\n".join(
        f"  #{story.story_id} {story.filename} by {story.uploader_name}, "
        f"{story.symbols} symbols, {story.created_at}"
        for story in stories
    )


async def versions_text(service: StoryService, channel_name: str | ChannelRef) -> str:
    versions = await service.list_versions(resolve_channel(channel_name))
    if not versions:
        return f"Channel {channel_label(channel_name)} has no model versions."
    lines = []
    for version in versions:
        mark = "*" if version.active else " "
        accuracy = (
            ""
            if version.learnable_accuracy is None
            else f", accuracy {version.learnable_accuracy:.1%}"
        )
        stories = ", ".join(f"#{i}" for i in version.story_ids)
        lines.append(f" {mark}v{version.version} {version.created_at}, stories {stories}{accuracy}")
    return "\n".join(lines)


async def export_file(
    service: StoryService, channel_name: str | ChannelRef, path: Path | None, out: TextIO
) -> Path:
    """Write the channel's export to ``path`` (default: its own name in the current folder)."""
    filename, data = await service.export_channel(resolve_channel(channel_name), CONSOLE_MEMBER)
    target = path if path is not None else Path(filename)
    await asyncio.to_thread(target.write_bytes, data)
    out.write(f"Wrote {target} ({format_bytes(len(data))}).\n")
    return target


async def import_file(
    service: StoryService, channel_name: str | ChannelRef, path: Path, out: TextIO
) -> None:
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror}") from None
    imported = await service.import_channel(resolve_channel(channel_name), CONSOLE_MEMBER, data)
    out.write(import_text(imported) + "\n")


async def remove_text(service: StoryService, channel_name: str | ChannelRef, story_id: str) -> str:
    if not story_id.lstrip("#").isdigit():
        raise UserError("Usage: /story remove ID (the number /story list shows)")
    removal = await service.remove_story(
        resolve_channel(channel_name), CONSOLE_MEMBER, int(story_id.lstrip("#"))
    )
    return removal_text(removal)


async def rollback_text(
    service: StoryService, channel_name: str | ChannelRef, version: str | None
) -> str:
    target: int | None = None
    if version is not None:
        if not version.lstrip("v").isdigit():
            raise UserError("Usage: /story rollback [VERSION]")
        target = int(version.lstrip("v"))
    rolled = await service.rollback(resolve_channel(channel_name), CONSOLE_MEMBER, target)
    return f"Version {rolled.version} is active."


class Console:
    def __init__(
        self,
        service: StoryService,
        out: TextIO,
        channel: str | ChannelRef = "console",
        read_line: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        self.service = service
        self.out = out
        self.channel: str | ChannelRef = channel
        self.read_line = read_line or _read_stdin

    async def run(self) -> None:
        self.out.write(f"fabulist console, channel {channel_label(self.channel)!r}. Type /help.\n")
        while True:
            line = await self.read_line(f"{channel_label(self.channel)}> ")
            if line is None:
                break
            try:
                if not await self.handle(line):
                    break
            except UserError as exc:
                self.out.write(exc.message + "\n")
            self.out.flush()

    async def handle(self, line: str) -> bool:
        """Run one command line; False means quit."""
        line = line.strip()
        if not line:
            return True
        if not line.startswith("/"):
            raise UserError("Commands start with /. Type /help.")
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UserError(f"Cannot parse the command: {exc}.") from None
        command, args = words[0][1:].lower(), words[1:]
        channel = resolve_channel(self.channel)
        out = self.out
        if command in ("quit", "exit"):
            return False
        if command == "help":
            out.write(HELP + "\n")
        elif command == "channel":
            if len(args) != 1:
                raise UserError("Usage: /channel NAME")
            self.channel = args[0]
        elif command == "train":
            rest, options = parse_options(args, _TRAIN_KEYS)
            if len(rest) != 1:
                raise UserError("Usage: /train FILE [mode:append] [layers:N] [seed:S] ...")
            await train_file(
                self.service, self.channel, Path(rest[0]), TrainOptions(**options), out
            )
        elif command == "continue":
            rest, options = parse_options(args, _CONTINUE_KEYS)
            text = await continue_text(
                self.service, self.channel, " ".join(rest), ContinueOptions(**options)
            )
            out.write(text + "\n")
        elif command == "status":
            out.write(await status_text(self.service, self.channel) + "\n")
        elif command == "cancel":
            progress = await self.service.cancel(channel, CONSOLE_MEMBER)
            out.write("Nothing to cancel.\n" if progress is None else "Cancelling.\n")
        elif command == "forget":
            await self.service.forget(channel, CONSOLE_MEMBER)
            out.write(f"Forgot channel {channel_label(self.channel)}.\n")
        elif command == "story":
            await self._story(args)
        elif command in ("stories", "versions", "rollback"):
            await self._story([{"stories": "list"}.get(command, command), *args])
        elif command == "plot":
            if len(args) != 1:
                raise UserError("Usage: /plot FILE.png")
            png = await self.service.training_plot(channel)
            if png is None:
                raise UserError("No trained model to plot.")
            await asyncio.to_thread(Path(args[0]).write_bytes, png)
            out.write(f"Wrote {args[0]}.\n")
        else:
            raise UserError(f"Unknown command /{command}. Type /help.")
        return True

    async def _story(self, args: list[str]) -> None:
        sub, rest = (args[0].lower(), args[1:]) if args else ("show", [])
        out = self.out
        if sub in ("show", "card"):
            out.write(await status_text(self.service, self.channel) + "\n")
        elif sub == "list":
            out.write(await stories_text(self.service, self.channel) + "\n")
        elif sub == "remove":
            if len(rest) != 1:
                raise UserError("Usage: /story remove ID (the number /story list shows)")
            out.write(await remove_text(self.service, self.channel, rest[0]) + "\n")
        elif sub == "versions":
            out.write(await versions_text(self.service, self.channel) + "\n")
        elif sub == "rollback":
            if len(rest) > 1:
                raise UserError("Usage: /story rollback [VERSION]")
            out.write(
                await rollback_text(self.service, self.channel, rest[0] if rest else None) + "\n"
            )
        elif sub == "export":
            if len(rest) > 1:
                raise UserError("Usage: /story export [FILE]")
            await export_file(self.service, self.channel, Path(rest[0]) if rest else None, out)
        elif sub == "import":
            if len(rest) != 1:
                raise UserError("Usage: /story import FILE")
            await import_file(self.service, self.channel, Path(rest[0]), out)
        else:
            raise UserError(
                "Usage: /story show | list | remove ID | versions | rollback [V] | "
                "export [FILE] | import FILE"
            )


async def _read_stdin(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None
