"""Where each symbol occurs in the training story, stored with the weights (issue 11).

The story's continuations of a context are the candidates model.generation picks among.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from model.config import LONG_STORY_SYMBOLS

IntArray = npt.NDArray[np.int64]


class StoryIndex:
    """Where each symbol occurs in the training story: the story's continuations of a context.

    Built from three int32 arrays stored with the weights (:func:`story_index_arrays`): the
    story's ids, its positions sorted by symbol (stable) and, per symbol, where its positions
    start in that order. A lookup costs the number of occurrences of the context's last symbol.
    """

    def __init__(
        self, story: npt.NDArray[Any], order: npt.NDArray[Any], offsets: npt.NDArray[Any]
    ) -> None:
        self.story = story
        self.order = order
        self.offsets = offsets

    def continuations(self, history: Sequence[int], max_order: int) -> list[IntArray]:
        """Story successors of the context's suffixes, longest first (lengths max_order..1).

        Entry k holds the distinct symbols that follow the context's last ``max_order - k``
        symbols somewhere in the story; suffixes the story never contains are left out.
        """
        if not history or max_order < 1:
            return []
        last = int(history[-1])
        if not 0 <= last < len(self.offsets) - 1:
            return []
        positions = self.order[self.offsets[last] : self.offsets[last + 1]].astype(np.int64)
        if len(positions) and positions[-1] + 1 >= len(self.story):
            positions = positions[:-1]  # the story's last symbol: nothing follows it
        found: list[IntArray] = []
        for k in range(min(max_order, len(history))):
            if k:
                before = positions - k
                inside = before >= 0
                positions = positions[inside][self.story[before[inside]] == int(history[-1 - k])]
            if not len(positions):
                break
            found.append(_distinct(self.story[positions + 1], len(self.offsets) - 1))
        return found[::-1]


def _distinct(symbols: npt.NDArray[Any], vocab_size: int) -> IntArray:
    """The sorted distinct values (np.unique's), found the cheapest way for their number: a
    lookup runs once per generated symbol. Few: a Python set (np.unique's fixed cost is most of
    it). Many, against the vocabulary (a frequent word's followers in a book): marked in a table
    of the vocabulary, whose cost grows with its size. Medians of 200 (2026-12-08), table
    against np.unique: 5,001 symbols, 300 of them 9.3 against 24 us, 3,000 20 against 198 us;
    200,000 symbols, 300 of them 29 against 15 us, 3,000 46 against 182 us."""
    if len(symbols) <= 64:
        return np.array(sorted(set(symbols.tolist())), dtype=np.int64)
    if len(symbols) * 128 < vocab_size:
        return np.unique(symbols).astype(np.int64)
    seen = np.zeros(vocab_size, dtype=bool)
    seen[symbols] = True
    return np.flatnonzero(seen).astype(np.int64)


def default_story_order(symbols: int) -> int:
    """How many previous symbols the story's continuations are looked up by, by story size.

    Short stories (the article's): 1. Their network has learned every window, so it alone
    steers back into the story; the story's word pairs only rule out stutters and word salad
    on the way (bench: every article prompt back in the story within 5 symbols; with 2 or 3,
    two prompts are led to the story's last sentence and need 11). Long stories: 2. Their
    network is unsure, and word pairs alone make salad; 3 copies whole passages.
    """
    return 2 if symbols >= LONG_STORY_SYMBOLS else 1


def story_index_arrays(ids: npt.NDArray[Any], vocab_size: int) -> dict[str, npt.NDArray[Any]]:
    """The arrays of :class:`StoryIndex` for a story of ids (stored with the weights)."""
    story = np.asarray(ids, dtype=np.int32)
    order = np.argsort(story, kind="stable").astype(np.int32)
    counts = np.bincount(story, minlength=vocab_size)
    offsets = np.zeros(vocab_size + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(counts)
    return {"story": story, "story_order": order, "story_offsets": offsets}
