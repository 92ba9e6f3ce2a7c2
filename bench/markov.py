"""A word Markov chain baseline (order 2 or 3) with interpolated Kneser-Ney smoothing.

Benchmark code, not product code: ``bench_books.py`` trains it on exactly the LSTM's training
windows and scores it on the LSTM's held-out windows, over the same (possibly capped)
vocabulary, so the perplexities compare like for like.

Smoothing (interpolated Kneser-Ney, Chen & Goodman 1998, one discount per level):

* Highest order (``order`` words of context h, next word w), from raw counts ``c``::

      P(w | h) = max(c(h w) - D, 0) / c(h)  +  D * N1+(h .) / c(h) * P_lower(w | h')

  where ``h'`` drops the oldest word of ``h`` and ``N1+(h .)`` is the number of distinct words
  seen after ``h``. A context never seen in training (``c(h) = 0``) backs off fully:
  ``P(w | h) = P_lower(w | h')``.
* Lower orders use *continuation* counts ``N1+(. h' w)`` (in how many distinct contexts the
  n-gram ``h' w`` was seen) in place of ``c``, with the same formula.
* The unigram level is interpolated the same way with the uniform distribution ``1 / V``
  over the whole vocabulary, so every symbol, even one never seen in training (a word that
  only occurs in the held-out text, or ``<unk>``), gets a probability > 0 and held-out
  perplexity is always finite.
* Discount per level: ``D = n1 / (n1 + 2 * n2)`` (Ney, Essen & Kneser 1994), where n1 / n2 are
  the numbers of n-grams of that level seen once / twice; 0.75 when that is undefined (tiny
  texts), clamped to [0.1, 0.95].

Every conditional distribution sums to 1 over the vocabulary (``distribution`` returns it; the
tests check it).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Context = tuple[int, ...]
FloatArray = npt.NDArray[np.float64]
DEFAULT_DISCOUNT = 0.75


@dataclass
class _Level:
    """Counts of one order: per context, the (continuation) count of each next word."""

    followers: dict[Context, dict[int, int]]
    totals: dict[Context, int]
    discount: float


def _discount(counts: Iterable[int]) -> float:
    n1 = n2 = 0
    for c in counts:
        if c == 1:
            n1 += 1
        elif c == 2:
            n2 += 1
    if n1 == 0 or n1 + 2 * n2 == 0:
        return DEFAULT_DISCOUNT
    return min(0.95, max(0.1, n1 / (n1 + 2 * n2)))


def _level(grams: dict[tuple[int, ...], int]) -> _Level:
    followers: dict[Context, dict[int, int]] = defaultdict(dict)
    totals: dict[Context, int] = defaultdict(int)
    for gram, count in grams.items():
        followers[gram[:-1]][gram[-1]] = count
        totals[gram[:-1]] += count
    return _Level(dict(followers), dict(totals), _discount(grams.values()))


@dataclass(frozen=True)
class Score:
    """Held-out figures: mean cross-entropy (nats), perplexity and top-1 accuracy."""

    windows: int
    cross_entropy: float
    perplexity: float
    accuracy: float


class KneserNeyMarkov:
    """An order-``order`` word Markov chain over ids ``0 .. vocab_size - 1``."""

    def __init__(self, order: int, vocab_size: int) -> None:
        if order < 1:
            raise ValueError("order must be >= 1")
        if vocab_size < 1:
            raise ValueError("vocab_size must be >= 1")
        self.order = order
        self.vocab_size = vocab_size
        # levels[k] predicts from k words of context (k = 0 .. order).
        self.levels: list[_Level] = []

    def fit(self, contexts: Sequence[Sequence[int]], targets: Sequence[int]) -> KneserNeyMarkov:
        """Count the training windows: each ``contexts[i]`` (>= order ids) precedes ``targets[i]``.

        Only the last ``order`` ids of each context are used.
        """
        if len(contexts) != len(targets):
            raise ValueError("contexts and targets differ in length")
        top: dict[tuple[int, ...], int] = defaultdict(int)
        for context, target in zip(contexts, targets, strict=True):
            if len(context) < self.order:
                raise ValueError(f"a context has fewer than {self.order} ids")
            tail = tuple(int(i) for i in context[len(context) - self.order :])
            top[(*tail, int(target))] += 1
        grams: list[dict[tuple[int, ...], int]] = [dict(top)]
        for _ in range(self.order):
            # Continuation counts: in how many distinct longer contexts each shorter n-gram ended.
            shorter: dict[tuple[int, ...], int] = defaultdict(int)
            for gram in grams[-1]:
                shorter[gram[1:]] += 1
            grams.append(dict(shorter))
        self.levels = [_level(g) for g in reversed(grams)]
        return self

    def probability(self, context: Sequence[int], target: int) -> float:
        """P(target | last ``order`` ids of context), smoothed as in the module docstring."""
        if not self.levels:
            raise RuntimeError("fit() first")
        tail = tuple(int(i) for i in context[len(context) - self.order :])
        p = 1.0 / self.vocab_size
        for k, level in enumerate(self.levels):
            h = tail[len(tail) - k :] if k else ()
            total = level.totals.get(h, 0)
            if total == 0:
                continue  # unseen context: keep the lower-order estimate as it is
            seen = level.followers[h]
            d = level.discount
            p = max(seen.get(int(target), 0) - d, 0.0) / total + d * len(seen) / total * p
        return p

    def distribution(self, context: Sequence[int]) -> FloatArray:
        """The whole next-symbol distribution (length ``vocab_size``, sums to 1)."""
        if not self.levels:
            raise RuntimeError("fit() first")
        tail = tuple(int(i) for i in context[len(context) - self.order :])
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for k, level in enumerate(self.levels):
            h = tail[len(tail) - k :] if k else ()
            total = level.totals.get(h, 0)
            if total == 0:
                continue
            seen = level.followers[h]
            d = level.discount
            p = p * (d * len(seen) / total)
            ids = np.fromiter(seen.keys(), dtype=np.int64, count=len(seen))
            counts = np.fromiter(seen.values(), dtype=np.float64, count=len(seen))
            p[ids] += np.maximum(counts - d, 0.0) / total
        return p

    def score(self, contexts: Sequence[Sequence[int]], targets: Sequence[int]) -> Score:
        """Mean cross-entropy, perplexity and greedy (argmax) accuracy on held-out windows."""
        n = len(targets)
        if n == 0:
            raise ValueError("no windows to score")
        nll = 0.0
        correct = 0
        # Whole distributions only for the argmax, once per distinct context (V floats: not kept).
        best: dict[Context, int] = {}
        for context, target in zip(contexts, targets, strict=True):
            nll -= math.log(self.probability(context, int(target)))
            tail = tuple(int(i) for i in context[len(context) - self.order :])
            if tail not in best:
                best[tail] = int(np.argmax(self.distribution(tail)))
            correct += int(best[tail] == int(target))
        mean = nll / n
        return Score(windows=n, cross_entropy=mean, perplexity=math.exp(mean), accuracy=correct / n)
