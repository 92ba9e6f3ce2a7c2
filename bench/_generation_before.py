"""The numpy generation before issue 16 (main at 64a6149), kept as the latency benchmark's
baseline so that every run measures both on the same machine at the same moment.

Not a bench itself: bench/bench_generation_latency.py imports it. One window at a time, the
first step cached per word, the logits of the whole vocabulary every step, default BLAS threads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from model.generation import CLOSING, SENTENCE_END, GenerationOptions
from model.serialization import STORY_ARRAYS, TrainedModel
from model.story_index import StoryIndex, default_story_order
from model.vocabulary import UNKNOWN

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (np.tanh(0.5 * x) + 1.0), dtype=np.float32)


class NumpyLSTMBefore:
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
) -> int:
    scores = logits.astype(np.float64)
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
        scores = logits.astype(np.float64)  # every symbol banned: ban nothing rather than fail
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


def generate_before(
    model: TrainedModel,
    prompt: Sequence[str],
    options: GenerationOptions | None = None,
    *,
    network: NumpyLSTMBefore | None = None,
) -> list[str]:
    """The generated symbols only (not the prompt). Pass ``network`` to reuse its caches."""
    options = options or GenerationOptions()
    # Only the words the network reads must be known: an unknown word earlier in a long prompt
    # is outside the context window and changes nothing.
    ids = model.vocabulary.encode(list(prompt)[-model.config.n_input :])
    net = network or NumpyLSTMBefore(model)
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
        return _pick(net.logits(context), options, rng, banned, allowed, previous)

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
