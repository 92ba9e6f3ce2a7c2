"""Continue a story with a pure-numpy forward pass of the trained weights (no TensorFlow).

Each next symbol is predicted like in training: the last ``n_input`` symbols are run through
the LSTM from a zero state and the dense layer gives logits over the vocabulary. Because the
first step always starts from the zero state, its result depends only on the word, so it is
computed once per word and cached (the main reason a 32-symbol continuation takes ~2-3 ms).

**Prompts shorter than n_input** are completed on the left with the story's own most frequent
predecessors of the prompt's first symbol (``weights["left_context"]``, computed from the
training story), so the network sees a context shaped like its training windows. When the
story has no such predecessor (the symbol only occurs at the very start), the context is run
as it is, shorter — an LSTM accepts any length. An empty prompt starts from the zero state.
**Longer prompts** use their last ``n_input`` symbols (only those need be in the vocabulary).

**Choosing the next symbol** (issue 11; ``bench/bench_continuation_quality.py``). A network
asked about a window the story never has (``mouse mouse mouse``) answers almost anything, so:

* ``follow_story``: the candidates are the story's own continuations of the longest suffix of
  the prompt and reply so far (at most :func:`default_story_order` symbols) that the story
  contains (:class:`StoryIndex`, stored with the weights); the network ranks them. On a window
  the network has learned, its choice is one of them anyway: Listing 11 is unchanged.
* ``no_repeat_ngram`` (4): a symbol that would repeat a 4-gram of the prompt or the reply is
  not chosen (greedy decoding otherwise loops on long stories). When every story continuation
  is ruled out, the network chooses among all symbols, never the previous one again.
* Sampling (``temperature`` > 0) applies ``top_k``, then ``top_p`` (nucleus, default 0.9), and
  is seeded by ``seed``; greedy decoding (0) has one possible output, whatever the seed.

**Filtered words** (``blocked``, :class:`~model.filtering.BlockedSymbols`) are masked out of
the logits first, before the story's candidates, the repeat guard and sampling are applied, and
are never lifted: when every candidate is filtered, the best unfiltered symbol of the whole
vocabulary is chosen; only a filter that bans the whole vocabulary raises ``ModelError``.

``<unk>`` (capped vocabularies) is never generated; unknown prompt words map to ``<unk>`` when
the vocabulary has it, otherwise :class:`~model.errors.UnknownWordsError` names them with
suggestions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from model.config import LONG_STORY_SYMBOLS
from model.errors import ModelError
from model.filtering import BlockedSymbols
from model.serialization import STORY_ARRAYS, TrainedModel
from model.vocabulary import UNKNOWN

SENTENCE_END = frozenset({".", "!", "?", "…", "。", "！", "？"})
CLOSING = frozenset({"”", "’", "»", ")", "」", "』"})
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
# Defaults measured with bench/bench_continuation_quality.py (README, "Continuation quality").
DEFAULT_TOP_P = 0.9
DEFAULT_NO_REPEAT_NGRAM = 4


@dataclass(frozen=True)
class GenerationOptions:
    """How to pick each next symbol (see the module docstring).

    ``seed`` only matters when ``temperature`` > 0: greedy decoding (0, the article's) has one
    possible output. ``top_k`` and ``top_p`` (nucleus: the fewest likeliest symbols whose
    probabilities add up to ``top_p``) also apply only when sampling. ``follow_story`` keeps
    each next symbol among the story's own continuations of the longest context the story
    contains; ``no_repeat_ngram`` n forbids a symbol that would repeat an n-gram already in
    the prompt or the reply (None or 0 = allowed).
    """

    length: int = 32
    temperature: float = 0.0  # 0 = greedy (the article)
    top_k: int | None = None
    seed: int | None = None
    stop_at_sentence_end: bool = False
    top_p: float | None = DEFAULT_TOP_P
    follow_story: bool = True
    no_repeat_ngram: int | None = DEFAULT_NO_REPEAT_NGRAM
    story_order: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int):
            raise ModelError("length must be a whole number.")
        if not 1 <= self.length <= 10_000:
            raise ModelError("length must be from 1 to 10000.")
        if not isinstance(self.temperature, int | float) or not 0.0 <= self.temperature <= 100.0:
            raise ModelError("temperature must be from 0 to 100.")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ModelError("top_k must be a whole number >= 1.")
        if self.top_p is not None and (
            not isinstance(self.top_p, int | float) or not 0.0 < self.top_p <= 1.0
        ):
            raise ModelError("top_p must be a number above 0 and at most 1.")
        if self.no_repeat_ngram is not None and (
            isinstance(self.no_repeat_ngram, bool)
            or not isinstance(self.no_repeat_ngram, int)
            or not 0 <= self.no_repeat_ngram <= 64
        ):
            raise ModelError("no_repeat_ngram must be a whole number from 0 to 64.")
        if self.story_order is not None and (
            isinstance(self.story_order, bool)
            or not isinstance(self.story_order, int)
            or not 1 <= self.story_order <= 64
        ):
            raise ModelError("story_order must be a whole number from 1 to 64.")


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (np.tanh(0.5 * x) + 1.0), dtype=np.float32)


class NumpyLSTM:
    """The network's forward pass in numpy (Keras gate order i, f, c, o)."""

    def __init__(self, model: TrainedModel) -> None:
        self.config = model.config
        w = model.weights
        self.embedding = np.asarray(w["embedding"], dtype=np.float32)
        self.layers = [
            (
                np.asarray(w[f"lstm{i}_kernel"], dtype=np.float32),
                np.asarray(w[f"lstm{i}_recurrent"], dtype=np.float32),
                np.asarray(w[f"lstm{i}_bias"], dtype=np.float32),
            )
            for i in range(model.config.layers)
        ]
        self.dense_kernel = np.asarray(w["dense_kernel"], dtype=np.float32)
        self.dense_bias = np.asarray(w["dense_bias"], dtype=np.float32)
        self.left_context = np.asarray(w["left_context"], dtype=np.int64)
        # Views of the stored arrays (no copies); models saved before the index have none.
        self.story_index = (
            StoryIndex(*(np.asarray(w[name]) for name in STORY_ARRAYS))
            if all(name in w for name in STORY_ARRAYS)
            else None
        )
        self._first: dict[int, list[tuple[FloatArray, FloatArray]]] = {}

    def _cell(
        self, layer: int, x: FloatArray, h: FloatArray | None, c: FloatArray | None
    ) -> tuple[FloatArray, FloatArray]:
        kernel, recurrent, bias = self.layers[layer]
        z = x @ kernel + bias
        if h is not None:
            z = z + h @ recurrent
        u = self.config.units
        i = _sigmoid(z[:u])
        f = _sigmoid(z[u : 2 * u])
        g = np.tanh(z[2 * u : 3 * u])
        o = _sigmoid(z[3 * u :])
        c_new = i * g if c is None else f * c + i * g
        return o * np.tanh(c_new), c_new

    def _first_step(self, symbol: int) -> list[tuple[FloatArray, FloatArray]]:
        cached = self._first.get(symbol)
        if cached is None:
            x = self.embedding[symbol]
            cached = []
            for layer in range(len(self.layers)):
                h, c = self._cell(layer, x, None, None)
                cached.append((h, c))
                x = h
            self._first[symbol] = cached
        return cached

    def logits(self, context: Sequence[int]) -> FloatArray:
        """Logits for the symbol after ``context``, run from a zero state."""
        if not context:
            top = np.zeros(self.config.units, dtype=np.float32)
            return np.asarray(top @ self.dense_kernel + self.dense_bias, dtype=np.float32)
        states = list(self._first_step(int(context[0])))
        for symbol in context[1:]:
            x = self.embedding[int(symbol)]
            for layer, (h, c) in enumerate(states):
                states[layer] = self._cell(layer, x, h, c)
                x = states[layer][0]
        return np.asarray(states[-1][0] @ self.dense_kernel + self.dense_bias, dtype=np.float32)

    def padded_context(self, ids: Sequence[int]) -> list[int]:
        """The context the network sees for a prompt of ids (see the module docstring)."""
        n = self.config.n_input
        ids = list(ids)
        if len(ids) >= n or not ids:
            return ids[-n:] if ids else []
        left = [int(s) for s in self.left_context[ids[0]] if s >= 0]
        need = n - len(ids)
        return left[len(left) - need :] + ids if need <= len(left) else left + ids


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
        positions = np.asarray(
            self.order[self.offsets[last] : self.offsets[last + 1]], dtype=np.int64
        )
        positions = positions[positions + 1 < len(self.story)]
        found: list[IntArray] = []
        for k in range(min(max_order, len(history))):
            if k:
                before = positions - k
                inside = before >= 0
                positions = positions[inside][self.story[before[inside]] == int(history[-1 - k])]
            if not len(positions):
                break
            found.append(np.unique(self.story[positions + 1]).astype(np.int64))
        return found[::-1]


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


class _RepeatGuard:
    """Which symbols would repeat an n-gram already in the prompt or the reply."""

    def __init__(self, n: int | None, history: Sequence[int]) -> None:
        self.n = n or 0
        self.history: list[int] = []
        self.followers: dict[tuple[int, ...], set[int]] = {}
        for symbol in history:
            self.add(symbol)

    def add(self, symbol: int) -> None:
        self.history.append(int(symbol))
        if self.n and len(self.history) >= self.n:
            head = tuple(self.history[len(self.history) - self.n : -1])
            self.followers.setdefault(head, set()).add(int(symbol))

    def banned(self) -> set[int]:
        if not self.n:
            return set()
        tail = tuple(self.history[len(self.history) - self.n + 1 :]) if self.n > 1 else ()
        return set(self.followers.get(tail, ()))


def _pick(
    logits: FloatArray,
    options: GenerationOptions,
    rng: np.random.Generator,
    banned: set[int],
    allowed: Sequence[IntArray],
    previous: int | None = None,
    forbidden: set[int] | None = None,
) -> int:
    scores = logits.astype(np.float64)
    if forbidden:
        scores[list(forbidden)] = -np.inf
    unfiltered = scores.copy()  # the only bans never lifted: filtered words
    if banned:
        scores[list(banned)] = -np.inf
    # The longest story context with a continuation that is not banned decides the candidates;
    # when there is none, the network chooses freely, but never the previous symbol again.
    for candidates in allowed:
        if np.isfinite(scores[candidates]).any():
            keep = np.full(len(scores), -np.inf)
            keep[candidates] = scores[candidates]
            scores = keep
            break
    else:
        if previous is not None:
            scores[previous] = -np.inf
    if not np.isfinite(scores).any():
        scores = unfiltered  # every symbol banned: lift the soft bans rather than fail
        if not np.isfinite(scores).any():
            raise ModelError("Every word this model knows is filtered.")
    if options.temperature <= 0.0:
        return int(np.argmax(scores))
    if options.top_k is not None and options.top_k < len(scores):
        cut = np.partition(scores, -options.top_k)[-options.top_k]
        scores = np.where(scores >= cut, scores, -np.inf)
    scores = scores / options.temperature
    scores -= scores.max()
    p = np.exp(scores)
    p /= p.sum()
    if options.top_p is not None and options.top_p < 1.0:
        ranked = np.argsort(-p, kind="stable")
        # The fewest likeliest symbols whose probabilities reach top_p (at least one).
        size = int(np.searchsorted(np.cumsum(p[ranked]), options.top_p)) + 1
        nucleus = np.zeros_like(p)
        nucleus[ranked[:size]] = p[ranked[:size]]
        p = nucleus / nucleus.sum()
    return int(rng.choice(len(p), p=p))


def generate(
    model: TrainedModel,
    prompt: Sequence[str],
    options: GenerationOptions | None = None,
    *,
    network: NumpyLSTM | None = None,
    blocked: BlockedSymbols | None = None,
) -> list[str]:
    """The generated symbols only (not the prompt). Pass ``network`` to reuse its caches;
    ``blocked``: the filtered words' symbols, never generated (see the module docstring)."""
    options = options or GenerationOptions()
    # Only the words the network reads must be known: an unknown word earlier in a long prompt
    # is outside the context window and changes nothing.
    ids = model.vocabulary.encode(list(prompt)[-model.config.n_input :])
    net = network or NumpyLSTM(model)
    rng = np.random.default_rng(options.seed)
    unknown = model.vocabulary.id_of(UNKNOWN) if model.vocabulary.has_unknown else None
    story = net.story_index if options.follow_story else None
    context = net.padded_context(ids)
    history = list(ids)
    repeats = _RepeatGuard(options.no_repeat_ngram, ids)
    order = options.story_order or (default_story_order(len(story.story)) if story else 1)
    symbols = model.vocabulary.symbols
    out: list[str] = []

    def step() -> int:
        banned = repeats.banned()
        if unknown is not None:
            banned.add(unknown)
        allowed = story.continuations(history, order) if story else []
        # Off the story (only when following one), the previous symbol is not repeated.
        previous = history[-1] if history and story is not None else None
        forbidden = blocked.banned(history) if blocked else None
        return _pick(net.logits(context), options, rng, banned, allowed, previous, forbidden)

    while len(out) < options.length:
        nxt = step()
        out.append(symbols[nxt])
        history.append(nxt)
        repeats.add(nxt)
        context = net.padded_context([*context, nxt])
        if options.stop_at_sentence_end and symbols[nxt] in SENTENCE_END:
            if len(out) < options.length:
                follower = step()
                if symbols[follower] in CLOSING:
                    out.append(symbols[follower])
            break
    return out


def left_context_table(
    ids: npt.NDArray[Any], vocab_size: int, n_input: int
) -> npt.NDArray[np.int32]:
    """For each symbol, its most frequent ``n_input - 1`` predecessors in ``ids`` (-1 = none)."""
    width = max(0, n_input - 1)
    table = np.full((vocab_size, width), -1, dtype=np.int32)
    if width == 0 or len(ids) <= width:
        return table
    ids = np.asarray(ids, dtype=np.int64)
    positions = np.arange(width, len(ids))
    rows = np.stack([ids[positions]] + [ids[positions - width + k] for k in range(width)], axis=1)
    uniq, first, counts = np.unique(rows, axis=0, return_index=True, return_counts=True)
    # Sort by symbol, then count descending, then first occurrence: first row per symbol wins.
    order = np.lexsort((first, -counts, uniq[:, 0]))
    ranked = uniq[order]
    keep = np.ones(len(ranked), dtype=bool)
    keep[1:] = ranked[1:, 0] != ranked[:-1, 0]
    best = ranked[keep]
    table[best[:, 0]] = best[:, 1:]
    return table
