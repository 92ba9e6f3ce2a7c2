"""Word filters: words a model must never generate, and cutting them out of a story.

**Matching.** A filtered word is tokenized like a story (:func:`~model.tokenizer.tokenize`) and
each symbol is *folded*: Unicode NFKD, combining marks dropped, case-folded, straight and
modifier apostrophes read as ``’`` (:func:`fold`). So ``Café``, ``CAFE`` and ``café`` are one
filter; ``ﬁne`` (a ligature) matches ``fine``. A filter matches whole symbols only: ``cat``
never matches ``cats`` or ``cat-maiden`` (a hyphenated word is one symbol).

**Spaceless scripts (CJK, Thai...)** are tokenized one character per symbol, so a word there is
a run of symbols and has no boundaries: a filter ``笨蛋`` matches those two characters wherever
they follow each other, inside longer runs too (``大笨蛋``), and a one-character filter bans
that character everywhere. This is the "contains" rule readers of those scripts expect.
A filter of several symbols in other scripts (``ice cream``) matches them in a row.

**Generation** (:class:`BlockedSymbols`): a one-symbol filter bans every vocabulary symbol that
folds to it; a filter of several symbols bans its last symbol whenever the prompt and reply so
far end with the others. ``model.generation`` masks these out of the logits before any other
choice, so the model picks the next best word; they are never lifted, unlike its soft bans.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from model.tokenizer import PARAGRAPH, token_spans, tokenize

_APOSTROPHES = str.maketrans({"'": "’", "ʼ": "’"})

Rule = tuple[str, ...]


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a symbol (see the module docstring)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", bare.casefold()).translate(_APOSTROPHES)


def fold_symbols(symbols: Sequence[str]) -> tuple[str, ...]:
    """Each symbol folded; a symbol already folded is kept as the same object (no copy)."""
    return tuple(
        symbol if folded == symbol else folded
        for symbol, folded in zip(symbols, map(fold, symbols), strict=True)
    )


def filter_rule(word: str) -> Rule:
    """The folded symbols of one filtered word (empty if it has none)."""
    return tuple(fold(symbol) for symbol in tokenize(word) if symbol != PARAGRAPH)


@dataclass(frozen=True)
class WordFilter:
    """A set of filtered words, as folded symbol sequences (order-independent, hashable)."""

    rules: frozenset[Rule] = field(default_factory=frozenset)

    @classmethod
    def of(cls, words: Iterable[str]) -> WordFilter:
        return cls(frozenset(rule for rule in map(filter_rule, words) if rule))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def matches(self, symbols: Sequence[str]) -> list[tuple[int, int]]:
        """``[start, end)`` symbol ranges of ``symbols`` that a filter matches, in order.

        Overlapping matches are all reported (a caller cutting them merges the ranges)."""
        if not self.rules:
            return []
        by_first: dict[str, list[Rule]] = {}
        for rule in self.rules:
            by_first.setdefault(rule[0], []).append(rule)
        folded = [fold(symbol) for symbol in symbols]
        found: list[tuple[int, int]] = []
        for start, symbol in enumerate(folded):
            for rule in by_first.get(symbol, ()):
                end = start + len(rule)
                if tuple(folded[start:end]) == rule:
                    found.append((start, end))
        return found


def mask_text(text: str, word_filter: WordFilter) -> tuple[str, list[str]]:
    """``text`` (NFC-normalized, as the tokenizer reads it) with every filtered word cut out,
    and the words cut (as written). Unchanged text and ``[]`` when nothing matches."""
    normalized, spans = token_spans(text, lowercase=False)
    ranges = word_filter.matches([symbol for symbol, _, _ in spans])
    if not ranges:
        return text, []
    cut: list[str] = []
    pieces: list[str] = []
    position = 0
    for first, last in sorted(ranges):
        start, end = spans[first][1], spans[last - 1][2]
        if end <= position:
            continue
        start = max(start, position)
        pieces.append(normalized[position:start])
        cut.append(normalized[start:end])
        position = end
    pieces.append(normalized[position:])
    return "".join(pieces), cut


class BlockedSymbols:
    """The vocabulary ids a word filter forbids (see the module docstring)."""

    def __init__(
        self,
        symbols: Sequence[str],
        word_filter: WordFilter,
        folded: tuple[str, ...] | None = None,
    ) -> None:
        """``folded``: the vocabulary's folded symbols, when another table already has them."""
        self.folded = folded if folded is not None else fold_symbols(symbols)
        ids: dict[str, set[int]] = {}
        for index, key in enumerate(self.folded):
            ids.setdefault(key, set()).add(index)
        always: set[int] = set()
        sequences: list[tuple[Rule, frozenset[int]]] = []
        for rule in word_filter.rules:
            last = ids.get(rule[-1])
            if not last:
                continue  # the model cannot say the word's last symbol: nothing to ban
            if len(rule) == 1:
                always |= last
            else:
                sequences.append((rule[:-1], frozenset(last)))
        self.always = frozenset(always)
        self.sequences = tuple(sequences)

    def __bool__(self) -> bool:
        return bool(self.always or self.sequences)

    def banned(self, history: Sequence[int]) -> set[int]:
        """Ids that must not come next after ``history`` (prompt and reply ids so far)."""
        banned = set(self.always)
        for prefix, last in self.sequences:
            size = len(prefix)
            if len(history) >= size and all(
                self.folded[int(history[len(history) - size + k])] == prefix[k] for k in range(size)
            ):
                banned |= last
        return banned
