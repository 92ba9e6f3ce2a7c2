"""The Discord adapter's languages: gettext catalogues (``locales/<lang>/LC_MESSAGES/
fabulist.po``, English is the source) loaded at start-up, the language of an interaction, and
the ``app_commands.Translator`` that gives Discord the commands' localized names.

A private answer speaks the member's language (``interaction.locale``), a public message the
server's (``guild_locale``, or the cached guild's ``preferred_locale``); a language without a
catalogue, or a message without a translation, is English.
"""

from __future__ import annotations

import gettext
import io
import logging
from collections.abc import Mapping
from pathlib import Path

import discord
from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from discord import app_commands

from bot.adapters.language import ENGLISH, Language, fill
from bot.messages import OPTION_NAME_CONTEXT

log = logging.getLogger(__name__)

LOCALES_DIR = Path(__file__).parent / "locales"
DOMAIN = "fabulist"
# The msgctxt of command, group and option names: they follow Discord's rules for names.
NAME_CONTEXT = OPTION_NAME_CONTEXT
# The msgctxt of a message menu's name (right-click -> Apps): any case, spaces allowed.
MENU_CONTEXT = "menu name"
NAME_LOCATIONS = frozenset(
    {
        app_commands.TranslationContextLocation.command_name,
        app_commands.TranslationContextLocation.group_name,
        app_commands.TranslationContextLocation.parameter_name,
    }
)
# Discord's locale -> the catalogue that serves it (es-419 reads Spain's Spanish well).
CATALOGUE_OF = {
    "es-ES": "es",
    "es-419": "es",
    "fr": "fr",
    "de": "de",
    "pt-BR": "pt_BR",
    "ja": "ja",
}


class Translated:
    """One catalogue's language; a message it lacks is English."""

    def __init__(self, locale: str, translations: gettext.GNUTranslations) -> None:
        self.locale = locale
        self._translations = translations
        self._numbers = Locale.parse(locale)

    def gettext(self, message: str, /, **params: object) -> str:
        return fill(self, self._translations.gettext(message), params)

    def ngettext(self, singular: str, plural: str, count: int, /, **params: object) -> str:
        return fill(self, self._translations.ngettext(singular, plural, count), params)

    def pgettext(self, context: str, message: str, /, **params: object) -> str:
        return fill(self, self._translations.pgettext(context, message), params)

    def number(self, value: float, /, decimals: int = 0, *, grouped: bool = True) -> str:
        pattern = ("#,##0" if grouped else "0") + ("." + "0" * decimals if decimals else "")
        return format_decimal(value, format=pattern, locale=self._numbers)

    def percent(self, share: float, /, decimals: int = 1) -> str:
        # The language's own pattern (``#,##0\u00a0%``) with the decimals asked for.
        pattern = self._numbers.percent_formats[None].pattern
        if decimals:
            pattern = pattern.replace("0", "0." + "0" * decimals, 1)
        return format_percent(share, format=pattern, locale=self._numbers)

    def name(self, message: str, context: str = NAME_CONTEXT) -> str | None:
        """A command, group or option name in this language, or None if it has none."""
        text = self._translations.pgettext(context, message)
        return None if text == message else text


def compile_po(path: Path) -> gettext.GNUTranslations:
    """A ``.po`` file as gettext reads it (compiled in memory: no ``.mo`` in the repository)."""
    with path.open("rb") as po:
        catalog = read_po(po)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


class Catalogue:
    """Every language the adapter speaks, by catalogue name (``es``, ``pt_BR``...)."""

    def __init__(self, languages: Mapping[str, Translated]) -> None:
        self._languages = dict(languages)

    @classmethod
    def load(cls, directory: Path = LOCALES_DIR) -> Catalogue:
        """Blocking file reads: call it off the event loop."""
        languages: dict[str, Translated] = {}
        for po in sorted(directory.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
            name = po.parent.parent.name
            languages[name] = Translated(name, compile_po(po))
        log.info("languages: en, %s", ", ".join(languages) or "none")
        return cls(languages)

    @property
    def names(self) -> list[str]:
        return list(self._languages)

    def language(self, locale: str | discord.Locale | None) -> Language:
        """The language for a Discord locale; English when there is no catalogue for it."""
        if locale is None:
            return ENGLISH
        code = locale.value if isinstance(locale, discord.Locale) else locale
        name = CATALOGUE_OF.get(code)
        return self._languages.get(name, ENGLISH) if name is not None else ENGLISH

    def translated(self, locale: discord.Locale) -> Translated | None:
        name = CATALOGUE_OF.get(locale.value)
        return self._languages.get(name) if name is not None else None


class CatalogueTranslator(app_commands.Translator):
    """The commands' names, descriptions and choices in every language with a catalogue."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        language = self.catalogue.translated(locale)
        if language is None:
            return None
        if isinstance(context.data, app_commands.ContextMenu):
            return language.name(string.message, MENU_CONTEXT)
        if context.location in NAME_LOCATIONS:
            return language.name(string.message)
        text = language.gettext(string.message)
        return None if text == string.message else text


def guild_language(client: discord.Client, guild_id: int | None, catalogue: Catalogue) -> Language:
    """A public message without an interaction (a retraining, a repaired progress message)."""
    guild = client.get_guild(guild_id) if guild_id is not None else None
    return catalogue.language(guild.preferred_locale if guild is not None else None)
