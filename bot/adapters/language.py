"""The language a renderer writes in: English (the source of every message, and what the CLI
and the console always use) or a translation the Discord adapter loads from its catalogues.

A message is its English text with ``{name}`` placeholders; the text is looked up first, and
the placeholders are filled in afterwards, so a translation may put them in any order.
"""

from __future__ import annotations

from typing import Protocol


class Language(Protocol):
    """gettext's two calls, with the placeholders filled in."""

    @property
    def locale(self) -> str: ...

    def gettext(self, message: str, /, **params: object) -> str: ...

    def ngettext(self, singular: str, plural: str, count: int, /, **params: object) -> str: ...


class English:
    """The source language: every message as written."""

    locale = "en-US"

    def gettext(self, message: str, /, **params: object) -> str:
        return message.format(**params) if params else message

    def ngettext(self, singular: str, plural: str, count: int, /, **params: object) -> str:
        return self.gettext(singular if count == 1 else plural, **params)


ENGLISH = English()


def N_(message: str) -> str:
    """Marks a message kept in a constant and looked up later (``lang.gettext(CONSTANT)``), so
    the catalogue extraction finds it."""
    return message
