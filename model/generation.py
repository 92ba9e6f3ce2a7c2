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

from model.errors import ModelError
from model.serialization import TrainedModel
from model.vocabulary import UNKNOWN

SENTENCE_END = frozenset({".", "!", "?", "…", "。", "！", "？"})
CLOSING = frozenset({"”", "’", "»", ")", "」", "』"})
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class GenerationOptions:
    length: int = 32
    temperature: float = 0.0  # 0 = greedy (the article)
    top_k: int | None = None
    seed: int | None = None
    stop_at_sentence_end: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int):
            raise ModelError("length must be a whole number.")
        if not 1 <= self.length <= 10_000:
            raise ModelError("length must be from 1 to 10000.")
        if not isinstance(self.temperature, int | float) or not 0.0 <= self.temperature <= 100.0:
            raise ModelError("temperature must be from 0 to 100.")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ModelError("top_k must be a whole number >= 1.")


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


def _pick(
    logits: FloatArray, options: GenerationOptions, rng: np.random.Generator, banned: int | None
) -> int:
    scores = logits.astype(np.float64)
    if banned is not None:
        scores[banned] = -np.inf
    if options.temperature <= 0.0:
        return int(np.argmax(scores))
    if options.top_k is not None and options.top_k < len(scores):
        cut = np.partition(scores, -options.top_k)[-options.top_k]
        scores = np.where(scores >= cut, scores, -np.inf)
    scores = scores / options.temperature
    scores -= scores.max()
    p = np.exp(scores)
    p /= p.sum()
    return int(rng.choice(len(p), p=p))


def generate(
    model: TrainedModel,
    prompt: Sequence[str],
    options: GenerationOptions | None = None,
    *,
    network: NumpyLSTM | None = None,
) -> list[str]:
    """The generated symbols only (not the prompt). Pass ``network`` to reuse its caches."""
    options = options or GenerationOptions()
    # Only the words the network reads must be known: an unknown word earlier in a long prompt
    # is outside the context window and changes nothing.
    ids = model.vocabulary.encode(list(prompt)[-model.config.n_input :])
    net = network or NumpyLSTM(model)
    rng = np.random.default_rng(options.seed)
    banned = model.vocabulary.id_of(UNKNOWN) if model.vocabulary.has_unknown else None
    context = net.padded_context(ids)
    symbols = model.vocabulary.symbols
    out: list[str] = []
    while len(out) < options.length:
        nxt = _pick(net.logits(context), options, rng, banned)
        out.append(symbols[nxt])
        context = net.padded_context([*context, nxt])
        if options.stop_at_sentence_end and symbols[nxt] in SENTENCE_END:
            if len(out) < options.length:
                follower = _pick(net.logits(context), options, rng, banned)
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
