"""Keeping the catalogues up to date: ``python -m bot.discord_adapter.catalogues`` (``make
catalogues``) extracts every message (the ``gettext``/``ngettext`` calls of the adapter and
the shared renderers, the core's ``UserError`` templates, the export file's refusals, and the
commands' names, descriptions and choices as discord.py registers them) into
``locales/fabulist.pot``, then merges it into each ``locales/<lang>/LC_MESSAGES/fabulist.po``:
new messages arrive untranslated, changed ones fuzzy, removed ones obsolete. Then translate, and run
``tests/service/test_catalogues.py``.

A message built at run time (``UserError(f"... {n}")``, ``gettext("a" + b)``) cannot be
looked up, so it would show in English everywhere: the tool names each one
(``unextracted_messages``), and the test fails while there is one.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import discord
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po
from discord import app_commands

import bot.core.service  # noqa: F401  # every error class of the core, bot.export's too
from bot.config import load_config
from bot.discord_adapter.client import COG_EXTENSIONS, FabulistBot
from bot.discord_adapter.i18n import DOMAIN, LOCALES_DIR, MENU_CONTEXT, NAME_CONTEXT
from bot.discord_adapter.replies import Denied
from bot.errors import UserError

log = logging.getLogger(__name__)

BOT_DIR = Path(__file__).resolve().parent.parent
# Where the messages Discord shows are written; the CLI and the console stay English.
SOURCES = (
    "discord_adapter",
    "adapters/text.py",
    "adapters/training_words.py",
    "adapters/language.py",
    "core",
    "errors.py",
    "messages.py",
    "display.py",
    "export.py",
)
# The calls whose arguments at these positions (1-based) are messages: gettext's, every error
# a member may see (its first argument is the message), and why an export file is refused.
MESSAGE_CALLS: dict[str, tuple[int, ...] | None] = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "N_": None,
    "Phrase": None,
    "Plural": (1, 2),
    "_bad": None,
}


def _subclasses(cls: type) -> Iterator[type]:
    yield cls
    subclasses: list[type] = cls.__subclasses__()
    for subclass in subclasses:
        yield from _subclasses(subclass)


def keywords() -> dict[str, tuple[int, ...] | None]:
    """Every message call, with the error classes as they are now (a new one is included)."""
    errors = {cls.__name__ for base in (UserError, Denied) for cls in _subclasses(base)}
    return {**MESSAGE_CALLS, **dict.fromkeys(sorted(errors))}


def _python_files() -> Iterator[Path]:
    for source in SOURCES:
        path = BOT_DIR / source
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    return call.func.attr if isinstance(call.func, ast.Attribute) else None


def _written_out(argument: ast.expr) -> bool:
    """A message as written (a string), or one kept elsewhere (a constant, ``error.template``);
    not one built here (an f-string, ``+``, ``%``, ``.format``, a conditional)."""
    if isinstance(argument, ast.Constant):
        return isinstance(argument.value, str)
    return isinstance(argument, ast.Name | ast.Attribute)


def built_messages(source: str, where: str, calls: dict[str, tuple[int, ...] | None]) -> list[str]:
    """``where:line: call`` for every message ``source`` builds at run time."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _called_name(node)
        if name is None or name not in calls:
            continue
        for position in calls[name] or (1,):
            if position <= len(node.args) and not _written_out(node.args[position - 1]):
                found.append(f"{where}:{node.lineno}: {name}(...) builds its message")
    return found


def unextracted_messages() -> list[str]:
    """Every message the code builds at run time, which no catalogue can hold."""
    calls = keywords()
    found = []
    for path in _python_files():
        where = path.relative_to(BOT_DIR.parent).as_posix()
        found += built_messages(path.read_text(encoding="utf-8"), where, calls)
    return found


def _add_code_messages(catalog: Catalog) -> None:
    calls = keywords()
    for path in _python_files():
        where = path.relative_to(BOT_DIR.parent).as_posix()
        # Babel warns of every f-string inside a message call, also of a parameter's value
        # (``gettext("{n} symbols", n=f"{n:,}")``), which is no message: unextracted_messages
        # names the messages that are built at run time instead.
        with contextlib.redirect_stderr(io.StringIO()):
            extracted = list(
                extract_from_file("python", path, keywords=calls, comment_tags=("Translators:",))
            )
        for lineno, message, comments, context in extracted:
            catalog.add(
                message, locations=[(where, lineno)], auto_comments=comments, context=context
            )


async def _command_strings() -> list[tuple[str, str | None]]:
    """(message, msgctxt) of every command as discord.py registers it."""
    bot = FabulistBot(load_config(environ={}), None, sync_dev_guild=False)
    for extension in COG_EXTENSIONS:
        await bot.load_extension(extension)
    strings: list[tuple[str, str | None]] = []
    for command in bot.tree.walk_commands():
        strings.append((command.name, NAME_CONTEXT))
        strings.append((command.description, None))
        if isinstance(command, app_commands.Command):
            for param in command.parameters:
                strings.append((param.display_name, NAME_CONTEXT))
                strings.append((param.description, None))
                strings.extend((choice.name, None) for choice in param.choices)
    for menu in bot.tree.get_commands(type=discord.AppCommandType.message):
        strings.append((menu.name, MENU_CONTEXT))
    await bot.close()
    return strings


def template() -> Catalog:
    catalog = Catalog(project="fabulist", domain=DOMAIN, fuzzy=False)
    for message, context in asyncio.run(_command_strings()):
        catalog.add(message, locations=[("discord-command-tree", 0)], context=context)
    _add_code_messages(catalog)
    return catalog


def main() -> None:
    for problem in unextracted_messages():
        log.warning("%s: write it as a message with {placeholders} (docs/languages.md)", problem)
    pot = template()
    with (LOCALES_DIR / f"{DOMAIN}.pot").open("wb") as out:
        write_po(out, pot, width=100, omit_header=False, sort_output=False, no_location=False)
    for po_path in sorted(LOCALES_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        with po_path.open("rb") as handle:
            catalog = read_po(handle)
        catalog.update(pot, update_header_comment=False)
        with po_path.open("wb") as out:
            write_po(out, catalog, width=100, ignore_obsolete=True)
        log.warning("updated %s", po_path)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
