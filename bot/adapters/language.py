"""The language a renderer writes in: English (the source of every message, and what the CLI
and the console always use) or a translation the Discord adapter loads from its catalogues.

A message is its English text with ``{name}`` placeholders; the text is looked up first, and
the placeholders are filled in afterwards, so a translation may put them in any order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from bot.messages import N_ as N_
from bot.messages import Number, Phrase, Plural, english_number


class Language(Protocol):
    """gettext's calls (plain, plural, with a context), with the placeholders filled in."""

    @property
    def locale(self) -> str: ...

    def gettext(self, message: str, /, **params: object) -> str: ...

    def ngettext(self, singular: str, plural: str, count: int, /, **params: object) -> str: ...

    def pgettext(self, context: str, message: str, /, **params: object) -> str: ...

    def number(self, value: float, /, decimals: int = 0, *, grouped: bool = True) -> str:
        """A figure as this language writes it: ``1,234`` / ``1.234`` / ``1 234``."""
        ...

    def percent(self, share: float, /, decimals: int = 1) -> str:
        """A share (0.125) as a percentage: ``12.5%`` / ``12,5 %``."""
        ...


class English:
    """The source language: every message as written."""

    locale = "en-US"

    def gettext(self, message: str, /, **params: object) -> str:
        return message.format(**params) if params else message

    def ngettext(self, singular: str, plural: str, count: int, /, **params: object) -> str:
        message = singular if count == 1 else plural
        return message.format(**params) if params else message

    def pgettext(self, context: str, message: str, /, **params: object) -> str:
        return self.gettext(message, **params)

    def number(self, value: float, /, decimals: int = 0, *, grouped: bool = True) -> str:
        return english_number(value, decimals, grouped=grouped)

    def percent(self, share: float, /, decimals: int = 1) -> str:
        return format(share, f".{decimals}%")


ENGLISH = English()


def fill(lang: Language, text: str, params: Mapping[str, object]) -> str:
    """``text`` with its placeholders filled in; a parameter that is a ``Phrase`` (a size with
    its unit, a plural, an option's name) or a ``Number`` is said in ``lang`` too."""
    if not params:
        return text
    return text.format(**{name: said(lang, value) for name, value in params.items()})


def said(lang: Language, value: object) -> object:
    """A ``Phrase`` or a ``Number`` in ``lang``; any other value as it is."""
    if isinstance(value, Number):
        return lang.number(value.value, value.decimals, grouped=value.grouped)
    if isinstance(value, Plural):
        return lang.ngettext(value.singular, value.plural, value.count, **value.params)
    if isinstance(value, Phrase):
        if value.context is not None:
            return lang.pgettext(value.context, value.message, **value.params)
        return lang.gettext(value.message, **value.params)
    return value
