"""How a console/CLI command is declared once, and how each surface spells it.

A ``Command`` (see ``bot.adapters.commands.COMMANDS``) names its arguments once; the console
reads them as words and ``key:value`` options (``/story export out.zip``, ``length:20``), the CLI
builds its argparse parser from the same declarations (``export --out out.zip``,
``--length 20``). Both hand the handler the same ``Call``.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from bot.core.api import ChannelRef, Member, console_channel
from bot.errors import UserError

if TYPE_CHECKING:
    from bot.core.service import StoryService

# The console's and the CLI's user: an admin of every channel it names.
CONSOLE_MEMBER = Member(user_id=0, display_name="console", is_admin=True)


def resolve_channel(channel: str | ChannelRef) -> ChannelRef:
    """A console channel by name, or a channel given by id (``--channel-id``)."""
    return console_channel(channel) if isinstance(channel, str) else channel


def channel_label(channel: str | ChannelRef) -> str:
    if isinstance(channel, str):
        return channel
    return channel.name or f"<#{channel.channel_id}>"


@dataclass(frozen=True)
class Positional:
    """A word in the console (``/story import FILE``), a positional argument in the CLI."""

    name: str
    help: str
    metavar: str
    type: Callable[[str], Any] = str
    optional: bool = False  # [NAME]: may be left out (None)
    many: bool = False  # NAME...: every remaining word, as a list
    cli_option: str | None = None  # the CLI takes it as this option instead (``--out FILE``)


@dataclass(frozen=True)
class Option:
    """``name:VALUE`` in the console, ``--name VALUE`` in the CLI (None when left out)."""

    name: str
    help: str
    type: Callable[[str], Any]
    example: str  # /help shows [name:example]
    cli_flag: str | None = None  # the CLI spells it as this flag, which sets ``example``


@dataclass(frozen=True)
class Flag:
    """The bare word ``name`` in the console (``/forget yes``), ``--name`` in the CLI."""

    name: str
    help: str


Argument = Positional | Option | Flag


@dataclass(frozen=True)
class Confirmation:
    """Asked before the command runs, unless its ``yes`` flag is given ({channel}: its label)."""

    question: str
    refusal: str  # the CLI without a terminal to ask on
    declined: str


@dataclass(frozen=True)
class Call:
    """One invocation: the facade, the channel, the parsed arguments, where output goes."""

    service: StoryService
    channel: str | ChannelRef
    args: Mapping[str, Any]
    out: TextIO  # progress is written here as it happens; the reply after
    runs_to_end: bool  # the CLI: a command waits for a training it queued (remove's retraining)

    @property
    def ref(self) -> ChannelRef:
        return resolve_channel(self.channel)

    @property
    def label(self) -> str:
        return channel_label(self.channel)


@dataclass(frozen=True)
class Reply:
    text: str
    ok: bool = True  # False: the CLI exits with status 1


Handler = Callable[[Call], Awaitable["Reply | str | None"]]


@dataclass(frozen=True)
class Command:
    name: str  # python -m bot NAME
    console: tuple[str, ...]  # its console spellings (/help shows the first); () = CLI only
    help: str
    handler: Handler
    arguments: tuple[Argument, ...] = ()
    confirm: Confirmation | None = None
    cli: bool = True  # offered by the CLI
    trains: bool = False  # may run a training in this process (the CLI's Ctrl-C explains it)

    def __post_init__(self) -> None:
        if self.confirm is not None and not any(
            isinstance(a, Flag) and a.name == "yes" for a in self.arguments
        ):
            raise ValueError(f"{self.name}: a confirmation needs a 'yes' flag to skip it")


async def invoke(command: Command, call: Call) -> Reply | None:
    """Run the command's handler; its text (if any) as a ``Reply``."""
    reply = await command.handler(call)
    return Reply(reply) if isinstance(reply, str) else reply


# -- the console's spelling ----------------------------------------------------------------


def console_usage(command: Command) -> str:
    """``/train FILE [mode:append] [layers:2] ...``: the first spelling and its arguments."""
    words = [f"/{command.console[0]}"]
    for arg in command.arguments:
        if isinstance(arg, Positional):
            shown = arg.metavar + ("..." if arg.many else "")
            words.append(f"[{shown}]" if arg.optional else shown)
        elif isinstance(arg, Option):
            words.append(f"[{arg.name}:{arg.example}]")
        else:
            words.append(f"[{arg.name}]")
    return " ".join(words)


def parse_options(
    words: list[str], keys: dict[str, Callable[[str], Any]]
) -> tuple[list[str], dict[str, Any]]:
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
                kind = getattr(keys[key], "__name__", "value")
                raise UserError(f"{key} must be a {kind}, not {value!r}.") from None
        else:
            rest.append(word)
    return rest, options


def parse_console(command: Command, words: list[str]) -> dict[str, Any]:
    """The console's words after the command's name, as the handler's arguments."""
    keys = {a.name: a.type for a in command.arguments if isinstance(a, Option)}
    rest, values = parse_options(words, keys)
    usage = UserError(f"Usage: {console_usage(command)}")
    for arg in command.arguments:
        if isinstance(arg, Option):
            values.setdefault(arg.name, None)
        elif isinstance(arg, Flag):
            values[arg.name] = arg.name in rest
            if values[arg.name]:
                rest.remove(arg.name)
    try:
        for arg in command.arguments:
            if not isinstance(arg, Positional):
                continue
            if arg.many:
                values[arg.name] = [arg.type(word) for word in rest]
                rest = []
                if not values[arg.name] and not arg.optional:
                    raise usage
            elif rest:
                values[arg.name] = arg.type(rest.pop(0))
            elif arg.optional:
                values[arg.name] = None
            else:
                raise usage
    except ValueError:
        raise usage from None
    if rest:
        raise usage
    return values


# -- the CLI's spelling --------------------------------------------------------------------


def add_cli_arguments(parser: argparse.ArgumentParser, command: Command) -> None:
    """The command's arguments on its argparse subparser."""
    for arg in command.arguments:
        if isinstance(arg, Positional):
            if arg.cli_option is not None:
                parser.add_argument(
                    arg.cli_option, dest=arg.name, type=arg.type, metavar=arg.metavar, help=arg.help
                )
            else:
                nargs = "+" if arg.many else "?" if arg.optional else None
                parser.add_argument(
                    arg.name, nargs=nargs, type=arg.type, metavar=arg.metavar, help=arg.help
                )
        elif isinstance(arg, Option):
            if arg.cli_flag is not None:
                parser.add_argument(
                    arg.cli_flag,
                    dest=arg.name,
                    action="store_const",
                    const=arg.example,
                    help=arg.help,
                )
            else:
                spelled = "--" + arg.name.replace("_", "-")
                parser.add_argument(spelled, dest=arg.name, type=arg.type, help=arg.help)
        else:
            parser.add_argument(f"--{arg.name}", action="store_true", help=arg.help)


def cli_values(command: Command, namespace: argparse.Namespace) -> dict[str, Any]:
    return {arg.name: getattr(namespace, arg.name) for arg in command.arguments}
