"""Offline console: the slash commands' syntax against the same database, no Discord needed.

    /train data/belling-the-cat.txt [mode:append] [layers:2] [n_input:4] [seed:1] [max_seconds:60]
    /train FILE.fabulist.zip          (an export file is imported)
    /continue had a general [length:32] [temperature:0.8] [seed:7] [top_k:10]
    /story show   /story list   /story stats   /story remove ID   /story versions
    /story rollback [VERSION]   /story export [FILE]   /story import FILE
    /status   /cancel   /forget [yes]   /plot FILE.png   /channel NAME   /help   /quit
    (options in [] are optional: type length:20, with or without the brackets)

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

from bot.adapters.commands import (
    BY_CONSOLE_NAME,
    CONSOLE_MEMBER,
    channel_label,
    resolve_channel,
)
from bot.adapters.text import import_text, removal_text
from bot.core.api import (
    ChannelRef,
    ContinueOptions,
    JobProgress,
    TrainOptions,
)
from bot.core.service import StoryService
from bot.display import (
    count_text,
    display_prose,
    format_bytes,
    known,
    training_fraction,
)
from bot.errors import UserError

HELP = __doc__.split("\n\n")[1] if __doc__ else ""
_TRAIN_KEYS = {"mode": str, "layers": int, "n_input": int, "seed": int, "max_seconds": float}
# A story whose training did not finish stays stored: an append would train on it.
KEPT_STORY = (
    "Story #{story_id} stays in the channel's stories, so a later append trains on it; "
    "remove it (story remove {story_id}) if it should not."
)
_CONTINUE_KEYS = {"length": int, "temperature": float, "seed": int, "top_k": int}


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
            if known(progress.learnable_accuracy):
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
        if word.startswith("[") and word.endswith("]"):
            word = word[1:-1]  # /help shows options as [key:value]; typing it so works too
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
        if known(f.learnable_accuracy):
            accuracy = f", accuracy on learnable windows {f.learnable_accuracy:.1%}"
        elif known(f.val_accuracy):
            accuracy = f", held-out accuracy {f.val_accuracy:.1%}"
        else:
            accuracy = ""
        out.write(
            f"Trained model version {result.model_version} on {path.name}: {f.symbols} symbols, "
            f"vocabulary {f.vocabulary_size}, {count_text(f.epochs, 'epoch')} in "
            f"{f.seconds:.1f} s{accuracy}.\n"
        )
        return True
    out.write(f"Training {result.state}: {result.error}\n")
    if job.story_id is not None:
        out.write(KEPT_STORY.format(story_id=job.story_id) + "\n")
    return False


async def continue_text(
    service: StoryService, channel_name: str | ChannelRef, prompt: str, options: ContinueOptions
) -> str:
    result = await service.continue_story(resolve_channel(channel_name), prompt, options)
    share = (
        "" if result.original_share is None else f"  [{result.original_share:.0%} from the story]"
    )
    return display_prose(result.text) + share


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
            out.write(await BY_CONSOLE_NAME["show"].render(self.service, self.channel) + "\n")
        elif command == "cancel":
            progress = await self.service.cancel(channel, CONSOLE_MEMBER)
            out.write("Nothing to cancel.\n" if progress is None else "Cancelling.\n")
        elif command == "forget":
            label = channel_label(self.channel)
            if args not in ([], ["yes"]):
                raise UserError("Usage: /forget [yes]")
            if not args:
                answer = await self.read_line(
                    f"Delete every story, model and job of channel {label}? [y/N] "
                )
                if (answer or "").strip().lower() not in ("y", "yes"):
                    out.write("Nothing was deleted.\n")
                    return True
            await self.service.forget(channel, CONSOLE_MEMBER)
            out.write(f"Forgot channel {label}.\n")
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
        sub = "show" if sub == "card" else sub
        if sub in BY_CONSOLE_NAME:
            out.write(await BY_CONSOLE_NAME[sub].render(self.service, self.channel) + "\n")
        elif sub == "remove":
            if len(rest) != 1:
                raise UserError("Usage: /story remove ID (the number /story list shows)")
            out.write(await remove_text(self.service, self.channel, rest[0]) + "\n")
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
                "Usage: /story show | list | stats | remove ID | versions | rollback [V] | "
                "export [FILE] | import FILE"
            )


async def _read_stdin(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None
