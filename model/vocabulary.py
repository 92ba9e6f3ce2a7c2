"""The story's vocabulary (the article's Listing 2): id <-> symbol, most frequent first."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from model.errors import ModelError, UnknownWordsError

UNKNOWN = "<unk>"
MAX_SYMBOL_LENGTH = 200
SUGGESTED_WORDS = 3  # unknown words of one prompt that get suggestions (each costs a scan)
FALLBACK_CANDIDATES = 5_000


@dataclass(frozen=True)
class UnknownWord:
    """A prompt word the vocabulary lacks, with close vocabulary words (best first; none
    computed past the first :data:`SUGGESTED_WORDS` unknown words of a prompt)."""

    word: str
    suggestions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vocabulary:
    """Symbols ordered by frequency, ties by first occurrence.

    With ``max_size`` the vocabulary keeps the ``max_size - 1`` most frequent symbols plus
    :data:`UNKNOWN` (last id) whenever the story has more symbols than that; rare words are then
    encoded as ``UNKNOWN``. ``covered_share`` is the share of the training tokens that are not
    ``UNKNOWN`` (1.0 when nothing was cut; ``None`` for a vocabulary loaded from a plain list).
    """

    symbols: tuple[str, ...]
    covered_share: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        index = {symbol: i for i, symbol in enumerate(self.symbols)}
        if len(index) != len(self.symbols):
            raise ModelError("A vocabulary cannot hold the same symbol twice.")
        object.__setattr__(self, "_index", index)

    @property
    def _ids(self) -> dict[str, int]:
        index: dict[str, int] = self.__dict__["_index"]
        return index

    @classmethod
    def build(cls, tokens: Sequence[str], max_size: int | None = None) -> Vocabulary:
        if max_size is not None and max_size < 2:
            raise ModelError("A vocabulary cap must allow at least 2 symbols.")
        counts = Counter(tokens)
        first: dict[str, int] = {}
        for i, token in enumerate(tokens):
            first.setdefault(token, i)
        ordered = sorted(counts, key=lambda s: (-counts[s], first[s]))
        if max_size is None or len(ordered) <= max_size:
            return cls(tuple(ordered), covered_share=1.0)
        kept = [s for s in ordered[: max_size - 1] if s != UNKNOWN]
        covered = sum(counts[s] for s in kept)
        share = covered / len(tokens) if tokens else 1.0
        return cls((*kept, UNKNOWN), covered_share=share)

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._ids

    @property
    def has_unknown(self) -> bool:
        return UNKNOWN in self._ids

    def id_of(self, symbol: str) -> int:
        """The id of ``symbol``; ``KeyError`` if absent (even when ``UNKNOWN`` exists)."""
        return self._ids[symbol]

    def lookup(self, token: str) -> int | None:
        """The id of ``token``, or of its spelling with the other apostrophe (' / ’: don't /
        don’t); None when the story has neither (``UNKNOWN`` is not applied)."""
        ids = self._ids
        found = ids.get(token)
        if found is None and ("'" in token or "’" in token):
            found = ids.get(token.replace("'", "\0").replace("’", "'").replace("\0", "’"))
        return found

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Ids of ``tokens`` (:meth:`lookup`); absent ones become ``UNKNOWN`` if present, else
        UnknownWordsError names them with suggestions."""
        unknown_id = self._ids.get(UNKNOWN)
        out: list[int] = []
        missing: list[str] = []
        for token in tokens:
            i = self.lookup(token)
            if i is None:
                i = unknown_id
            if i is None:
                missing.append(token)
            else:
                out.append(i)
        if missing:
            found = self.unknown_words(missing)
            raise UnknownWordsError([u.word for u in found], {u.word: u.suggestions for u in found})
        return out

    def unknown_words(self, words: Iterable[str]) -> tuple[UnknownWord, ...]:
        """``words`` once each, in order, the first :data:`SUGGESTED_WORDS` with suggestions."""
        distinct = list(dict.fromkeys(words))
        return tuple(
            UnknownWord(word, tuple(self.suggest(word)) if i < SUGGESTED_WORDS else ())
            for i, word in enumerate(distinct)
        )

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.symbols[int(i)] for i in ids]

    def suggest(self, word: str, limit: int = 3) -> list[str]:
        """Vocabulary words close to ``word`` (difflib ratio >= 0.6), best first.

        difflib over a whole 20,000-word vocabulary takes ~75 ms a word, so it only sees
        candidates within 2 letters of the word's length that share its first letter; when
        those give fewer than ``limit`` matches or no close one (ratio 0.8, about one typo in
        five letters: the typo may be in the first letter), also the
        :data:`FALLBACK_CANDIDATES` most frequent words of such a length.
        """
        if not word:
            return []
        low, high = len(word) - 2, len(word) + 2
        first = word[0]
        candidates = [
            s for s in self.symbols if s[0] == first and low <= len(s) <= high and s != UNKNOWN
        ]
        found = difflib.get_close_matches(word, candidates, n=limit, cutoff=0.6)
        if len(found) >= limit and difflib.SequenceMatcher(None, word, found[0]).ratio() >= 0.8:
            return found
        candidates += [
            s
            for s in self.symbols[:FALLBACK_CANDIDATES]
            if s[0] != first and low <= len(s) <= high and s != UNKNOWN
        ]
        return difflib.get_close_matches(word, candidates, n=limit, cutoff=0.6)

    def complete(self, prefix: str, limit: int = 25) -> list[str]:
        """Symbols starting with ``prefix`` (case-insensitive), most frequent first."""
        folded = prefix.casefold()
        out: list[str] = []
        for symbol in self.symbols:
            if symbol != UNKNOWN and symbol.casefold().startswith(folded):
                out.append(symbol)
                if len(out) >= limit:
                    break
        return out

    def to_json(self) -> list[str]:
        return list(self.symbols)

    @classmethod
    def from_json(cls, data: object) -> Vocabulary:
        """Accepts ``to_json()`` output or ``{"symbols": [...], "covered_share": x}``."""
        share: object = None
        if isinstance(data, dict):
            share = data.get("covered_share")
            data = data.get("symbols")
        if not isinstance(data, list) or not data:
            raise ModelError("A vocabulary must be a non-empty list of symbols.")
        for symbol in data:
            if not isinstance(symbol, str) or not symbol or len(symbol) > MAX_SYMBOL_LENGTH:
                raise ModelError("A vocabulary symbol must be a non-empty short string.")
        if share is not None and (
            isinstance(share, bool)
            or not isinstance(share, int | float)
            or not 0.0 <= float(share) <= 1.0
        ):
            raise ModelError("covered_share must be a number between 0 and 1.")
        return cls(tuple(data), covered_share=None if share is None else float(share))

    def to_dict(self) -> dict[str, object]:
        return {"symbols": list(self.symbols), "covered_share": self.covered_share}
