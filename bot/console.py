"""Offline console: the slash commands' syntax against the same database, no Discord needed.

Its commands are the rows of ``bot.adapters.commands.COMMANDS`` (``/help`` lists them):
``/train data/belling-the-cat.txt layers:2``, ``/continue had a general length:20``,
``/story list``, ``/story remove 3``, ``/forget`` (asks first; ``/forget yes`` does not)...
The console's own keys are ``/channel NAME``, ``/help`` and ``/quit``. Console channels map to
stable ids via ``bot.core.api.console_channel`` (guild None). The console user is an admin of
every console channel.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable
from typing import TextIO

from bot.adapters.commands import COMMANDS, CONSOLE_GROUPS, CONSOLE_SPELLINGS
from bot.adapters.syntax import (
    Call,
    Command,
    channel_label,
    console_usage,
    invoke,
    parse_console,
)
from bot.core.api import ChannelRef
from bot.core.service import StoryService
from bot.errors import UserError

_SESSION_KEYS = (
    ("/channel NAME", "switch to another channel"),
    ("/help", "this list"),
    ("/quit", "leave the console (also /exit)"),
)


def help_text() -> str:
    """/help: every console command of the table, then the console's own keys."""
    rows = []
    for command in COMMANDS:
        if command.console:
            also = ", ".join(f"/{s}" for s in command.console[1:])
            rows.append(
                (console_usage(command), command.help + (f" (also {also})" if also else ""))
            )
    rows.extend(_SESSION_KEYS)
    width = 30
    lines = [
        f"  {usage:<{width}} {text}"
        if len(usage) <= width
        else f"  {usage}\n  {'':<{width}} {text}"
        for usage, text in rows
    ]
    lines.append("  (options in [] are optional: type length:20, with or without the brackets)")
    return "\n".join(lines)


def group_usage(group: str) -> str:
    subs = [
        console_usage(command).removeprefix(f"/{group} ")
        for command in COMMANDS
        if command.console and command.console[0].startswith(f"{group} ")
    ]
    return f"Usage: /{group} " + " | ".join(subs)


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
        name, args = words[0][1:].lower(), words[1:]
        if name in ("quit", "exit"):
            return False
        if name == "help":
            self.out.write(help_text() + "\n")
        elif name == "channel":
            if len(args) != 1:
                raise UserError("Usage: /channel NAME")
            self.channel = args[0]
        else:
            command, args = self._lookup(name, args)
            await self._run(command, args)
        return True

    def _lookup(self, name: str, args: list[str]) -> tuple[Command, list[str]]:
        """The table's command that ``/name args...`` spells, and its remaining words."""
        if name in CONSOLE_GROUPS and (args or name not in CONSOLE_SPELLINGS):
            # /story SUB ...; /story alone is the row spelled "story" if there is one.
            command = CONSOLE_SPELLINGS.get(f"{name} {args[0].lower()}") if args else None
            if command is None:
                raise UserError(group_usage(name))
            return command, args[1:]
        if name not in CONSOLE_SPELLINGS:
            raise UserError(f"Unknown command /{name}. Type /help.")
        return CONSOLE_SPELLINGS[name], args

    async def _run(self, command: Command, words: list[str]) -> None:
        values = parse_console(command, words)
        if command.confirm is not None and not values.get("yes"):
            label = channel_label(self.channel)
            answer = await self.read_line(
                command.confirm.question.format(**{**values, "channel": label}) + " [y/N] "
            )
            if (answer or "").strip().lower() not in ("y", "yes"):
                self.out.write(command.confirm.declined + "\n")
                return
        call = Call(self.service, self.channel, values, self.out, runs_to_end=False)
        reply = await invoke(command, call)
        if reply is not None:
            self.out.write(reply.text + "\n")


async def _run_console(call: Call) -> None:
    await Console(call.service, call.out, call.channel).run()


# The CLI's ``console`` subcommand: a row like the table's, defined here because the console
# reads the table (bot.cli offers it after the table's rows).
CONSOLE_COMMAND = Command(
    "console", (), "interactive console with the slash commands' syntax", _run_console
)


async def _read_stdin(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None
