"""Keeping the catalogues up to date: ``python -m bot.discord_adapter.catalogues`` (``make
catalogues``) extracts every message (the ``gettext``/``ngettext`` calls of the adapter and
the shared renderers, the core's ``UserError`` templates, and the commands' names,
descriptions and choices as discord.py registers them) into ``locales/fabulist.pot``, then
merges it into each ``locales/<lang>/LC_MESSAGES/fabulist.po``: new messages arrive
untranslated, changed ones fuzzy, removed ones obsolete. Then translate, and run
``tests/service/test_catalogues.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import discord
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po
from discord import app_commands

from bot.config import load_config
from bot.discord_adapter.client import COG_EXTENSIONS, FabulistBot
from bot.discord_adapter.i18n import DOMAIN, LOCALES_DIR, MENU_CONTEXT, NAME_CONTEXT

log = logging.getLogger(__name__)

BOT_DIR = Path(__file__).resolve().parent.parent
# Where the messages Discord shows are written; the CLI and the console stay English.
SOURCES = ("discord_adapter", "adapters/text.py", "adapters/language.py", "core", "errors.py")
ERROR_CLASSES = (
    "UserError",
    "StorageUnavailable",
    "InvalidUpload",
    "InvalidOption",
    "NoModel",
    "NotFound",
    "Busy",
    "TrainingElsewhere",
    "NotAllowed",
    "QueueFull",
    "CoolingDown",
    "Denied",
)
KEYWORDS: dict[str, tuple[int, ...] | None] = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "N_": None,
    **dict.fromkeys(ERROR_CLASSES),
}


def _python_files() -> Iterator[Path]:
    for source in SOURCES:
        path = BOT_DIR / source
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _add_code_messages(catalog: Catalog) -> None:
    for path in _python_files():
        where = path.relative_to(BOT_DIR.parent).as_posix()
        for lineno, message, comments, context in extract_from_file(
            "python", path, keywords=KEYWORDS, comment_tags=("Translators:",)
        ):
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
