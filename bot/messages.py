"""What a message written in any layer needs so that an adapter can say it in another
language: ``N_`` marks a message kept in a constant, and a ``Phrase`` is a part of a message
that is a message itself (a file size with its unit, a plural, an option's name), passed as
a parameter and looked up in the reader's language along with the message around it.

Every message is English with ``{name}`` placeholders; ``str(phrase)`` is its English.
"""

from __future__ import annotations

# The msgctxt of command and option names (Discord's names, localized by its clients).
OPTION_NAME_CONTEXT = "command name"


def N_(message: str) -> str:
    """Marks a message kept in a constant and looked up later (``lang.gettext(CONSTANT)``), so
    the catalogue extraction finds it."""
    return message


class Phrase:
    """A message used as a parameter of another: ``Phrase("{size} MiB", size="4.0")``."""

    context: str | None = None

    def __init__(self, message: str, /, **params: object) -> None:
        self.message = message
        self.params = params

    def english(self) -> str:
        return self.message.format(**self.params) if self.params else self.message

    def __str__(self) -> str:
        return self.english()

    def __format__(self, spec: str) -> str:
        return format(self.english(), spec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.english()!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash(self.english())


class Plural(Phrase):
    """A phrase with a count: ``Plural("{count} byte", "{count} bytes", n, count=n)``."""

    def __init__(self, singular: str, plural: str, count: int, /, **params: object) -> None:
        super().__init__(singular if count == 1 else plural, **params)
        self.singular = singular
        self.plural = plural
        self.count = count


class OptionName(Phrase):
    """A command option's name (``length``), as the member's client shows it (``longitud``);
    the Discord commands' names are in the catalogue already."""

    context = OPTION_NAME_CONTEXT


def english_number(value: float, decimals: int = 0, *, grouped: bool = True) -> str:
    """``1,234``, ``3.5``: a figure as English (and the CLI, and the console) writes it."""
    grouping = "," if grouped else ""
    if isinstance(value, int) and not decimals:
        return format(value, f"{grouping}d")
    return format(value, f"{grouping}.{decimals}f")


class Number:
    """A figure in a message, written the reader's way (``1,234``, ``1.234``, ``1 234``;
    ``3.5``, ``3,5``): ``Number(n)``, ``Number(seconds, 1, grouped=False)``."""

    def __init__(self, value: float, /, decimals: int = 0, *, grouped: bool = True) -> None:
        self.value = value
        self.decimals = decimals
        self.grouped = grouped

    def english(self) -> str:
        return english_number(self.value, self.decimals, grouped=self.grouped)

    def __str__(self) -> str:
        return self.english()

    def __format__(self, spec: str) -> str:
        return format(self.english(), spec)

    def __repr__(self) -> str:
        return f"Number({self.english()!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash(self.english())
