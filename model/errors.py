"""Errors raised by the story model; every message is fit to show to a user."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class ModelError(Exception):
    """Base class of every error the model package raises on purpose."""


class UnknownWordsError(ModelError):
    """Tokens to encode hold words the vocabulary lacks, and it has no ``<unk>``.

    ``Vocabulary.encode`` raises it; generation does not (it leaves such words out of the
    context and returns them as :class:`~model.vocabulary.UnknownWord` values).
    """

    def __init__(
        self, words: Sequence[str], suggestions: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self.words: tuple[str, ...] = tuple(dict.fromkeys(words))
        self.suggestions: dict[str, list[str]] = {
            word: list((suggestions or {}).get(word, ())) for word in self.words
        }
        parts = []
        for word in self.words:
            close = self.suggestions[word]
            hint = f" (did you mean {', '.join(repr(s) for s in close)}?)" if close else ""
            parts.append(f"{word!r}{hint}")
        noun = "word" if len(self.words) == 1 else "words"
        super().__init__(f"The story never uses the {noun} {'; '.join(parts)}.")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.words, self.suggestions))


class EverythingFiltered(ModelError):
    """Generation has no word left to pick: the filters forbid every word the model knows."""

    def __init__(self) -> None:
        super().__init__("Every word this model knows is filtered.")


class TrainingCancelled(ModelError):
    """Training stopped because ``should_cancel`` answered True."""

    def __init__(self, message: str = "Training was cancelled.") -> None:
        super().__init__(message)


class TrainingDiverged(ModelError):
    """The loss became NaN/infinite or exploded; a lower learning rate usually helps."""

    def __init__(self, message: str = "Training diverged.") -> None:
        super().__init__(message)


class StoryTooShortError(ModelError):
    """The story has fewer than ``n_input + 1`` symbols, so there is nothing to learn."""

    def __init__(self, symbols: int, needed: int) -> None:
        self.symbols = symbols
        self.needed = needed
        super().__init__(
            f"The story has {symbols} symbols; at least {needed} are needed to learn anything."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.symbols, self.needed))


class ModelFormatError(ModelError):
    """Bytes given to ``from_bytes`` are not a valid, intact fabulist model."""
