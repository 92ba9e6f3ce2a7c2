"""The network's forward pass in numpy, shaped for generating one symbol after another.

Every prediction runs the last ``n_input`` symbols through the LSTM from a zero state, as in
training. Consecutive windows overlap, so the work is pipelined (issue 16): after each symbol
the network keeps the states of the context's suffixes of length 1..n_input, and the next
symbol advances all of them with **one** product per layer — the input product once (layer 0:
every suffix reads the same symbol) and the recurrent product for the n_input - 1 suffixes
that have a state, stacked in one matrix. The longest suffix is the window whose logits the
next symbol is picked from. Same results as running each window alone (the same products per
row), n_input - 1 times fewer passes over the recurrent matrix than one window at a time.

Layouts, chosen by measurement (bench/bench_generation_latency.py): float32, C-contiguous; the
gate columns reordered to (i, f, o, g) so one sigmoid covers three gates; the recurrent matrix
split into column blocks of ~512 KiB, so the stacked rows reuse each block from the L2 cache
(OpenBLAS's small-M product streams a 4 MiB matrix once per row otherwise), or, stored int8,
transposed for :mod:`model.quantized`'s kernel (one output per contiguous row); the output layer
stored transposed (vocabulary x units), so the logits of a few candidate symbols are a gather
of rows and one small product, not the whole vocabulary.

**BLAS threads.** Products this small lose to thread hand-offs (a 512-unit step with a
5,000-word output: 0.79 ms with one OpenBLAS thread, 8 ms with the default two under load), so
generation runs with BLAS limited to one thread (:func:`single_threaded_blas`, threadpoolctl),
for the duration of the call only: training in the same process keeps its threads.

**Compact storage.** ``NumpyLSTM(model, compact=True)`` (the model cache's) keeps the
recurrent matrices as int8 with one float32 scale per column (a quarter of their float32 size)
and the other matrices as float16. The int8 recurrent matrices are multiplied as they are, by
the compiled kernel of :mod:`model.quantized` (numba; issue 27): the 1 MiB int8 matrix of a
512-unit layer fits a core's L2 cache, where its 4 MiB float32 copy streamed from L3 every
symbol. The other matrices compute in float32: their float32 copies are made on first use and
kept until :meth:`NumpyLSTM.release` (the model cache keeps them for its most recently used
models only). Without numba, and with ``int8_products=False``, the int8 matrices are widened to
float32 copies too and multiplied by BLAS, as before issue 27. An int8 layer's gates and
states are compiled as well (:func:`model.quantized.lstm_gates`). A 32-symbol greedy
continuation, p50 in three runs on the quiet 2-core machine (bench/RESULTS.md, 2026-12-08): the
article's model 3.9-4.8 ms with int8 products, 6.3-8.4 ms widened, 47-61 ms Keras; Grimm's (9
window states a symbol) 17.4-18.3 ms, 25.3-27.8 ms and 146-205 ms.

Rounding can turn a near-tie the other way, so the storage is **checked when the model is
loaded**, with the products generation will use (the int8 kernel's included): on the story's
own windows (all of them up to ``CHECKED_SYMBOLS`` story
symbols, four evenly spaced runs of 128 beyond), compact storage must make float32's first
choices, the best symbol of the vocabulary and the best of the story's continuations of each of
the window's suffixes (:meth:`NumpyLSTM.story_choices`). Where int8 changes one, every matrix
is kept float16; where float16 still does, float32. So a greedy continuation is the same as
float32's for as long as it passes through the story's windows and the repeat guard or a word
filter sets no first choice aside (tests/model/test_compact_storage.py, one and two layers,
untied and tied). Off the story a near-tie may still go the other way: measured by
``bench/bench_compact_choices.py`` (bench/RESULTS.md). Models saved without a story index have
nothing to check against and are stored int8 unchecked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from model.config import ModelConfig
from model.quantized import int8_kernel, int8_product, lstm_gates
from model.serialization import STORY_ARRAYS, TrainedModel
from model.story_index import StoryIndex

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
Precision = Literal["int8", "float16", "float32"]
# Story symbols the compact check runs (see NumpyLSTM): all of the article's 204.
CHECKED_SYMBOLS = 512
logger = logging.getLogger(__name__)
_BLOCK_BYTES = 512 * 1024  # one recurrent column block: fits the L2 cache with room to spare
# The previous cells of a first symbol (none; C-contiguous, as the compiled gates expect).
_NO_ROWS: FloatArray = np.zeros((0, 0), dtype=np.float32)


class _BlasLimit:
    """One thread for BLAS while any generation runs in this process.

    OpenBLAS's thread count is process state, not thread state: concurrent generations share
    one limit, set by the first to start and lifted by the last to end (a plain threadpoolctl
    context per call would restore the wrong count when calls overlap).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._controller: Any = None
        self._limit: Any = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._active == 0:
                if self._controller is None:
                    from threadpoolctl import ThreadpoolController

                    self._controller = ThreadpoolController()
                self._limit = self._controller.limit(limits=1, user_api="blas")
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0 and self._limit is not None:
                    self._limit.restore_original_limits()
                    self._limit = None


# The process's BLAS thread count has one owner (see _BlasLimit).
single_threaded_blas = _BlasLimit()


def _sigmoid_(x: FloatArray) -> None:
    """In place: sigmoid(x) = (tanh(x / 2) + 1) / 2."""
    x *= 0.5
    np.tanh(x, out=x)
    x += 1.0
    x *= 0.5


def _own(array: npt.NDArray[Any], dtype: Any) -> npt.NDArray[Any]:
    """A C-contiguous copy of ``array`` as ``dtype``, never a view."""
    return np.array(array, dtype=dtype, order="C", copy=True)


def _gates_ifog(array: npt.NDArray[Any], units: int) -> FloatArray:
    """Keras's gate columns (i, f, c, o) as (i, f, o, c), float32, C-contiguous."""
    i, f, c, o = (array[..., k * units : (k + 1) * units] for k in range(4))
    return np.ascontiguousarray(np.concatenate([i, f, o, c], axis=-1), dtype=np.float32)


@dataclass(frozen=True)
class _Layer:
    kernel: FloatArray  # (inputs, 4U), gates i f o g
    blocks: tuple[FloatArray, ...]  # the recurrent matrix (U, 4U) in column blocks (float32)
    bias: FloatArray  # (4U,)
    # Or the recurrent matrix as int8, transposed (4U, U), with its column scales (4U,):
    # multiplied by model.quantized's kernel (then ``blocks`` is empty).
    recurrent_int8: npt.NDArray[np.int8] | None = None
    recurrent_scale: FloatArray | None = None


@dataclass(frozen=True)
class _Weights:
    embedding: FloatArray  # (V, E)
    layers: tuple[_Layer, ...]
    dense_t: FloatArray  # (V, U): the output layer transposed
    dense_bias: FloatArray  # (V,)

    @property
    def nbytes(self) -> int:
        arrays: list[npt.NDArray[Any]] = [self.embedding, self.dense_t, self.dense_bias]
        for layer in self.layers:
            arrays += [layer.kernel, layer.bias, *layer.blocks]
        return sum(int(a.nbytes) for a in arrays)


def _int8_columns(matrix: FloatArray) -> tuple[npt.NDArray[np.int8], FloatArray]:
    """``matrix`` as int8 times one float32 scale per column (its largest magnitude / 127)."""
    scale = np.abs(matrix).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    return np.round(matrix / scale).astype(np.int8), scale.astype(np.float32)


def _blocked(recurrent: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The recurrent matrix (U, 4U) as (blocks, U, columns): the fewest equal column blocks
    of at most ~512 KiB (float32), each one contiguous."""
    units, width = recurrent.shape
    count = (
        next(
            n
            for n in range(1, width + 1)
            if width % n == 0 and units * (width // n) * 4 <= _BLOCK_BYTES
        )
        if width
        else 1
    )
    columns = max(1, width // count)
    return np.ascontiguousarray(recurrent.reshape(units, count, columns).transpose(1, 0, 2))


def _stored_arrays(
    w: dict[str, Any], config: ModelConfig, precision: Precision
) -> dict[str, npt.NDArray[Any]]:
    """The weights in the layout the products use, reordered and transposed, stored as
    ``precision`` (int8: the recurrent matrices with a scale per column, float16 the rest).
    Every array is a copy: none is a view of the model's weights, so their buffer (from_bytes
    reads them all from one bytes object) can be freed once the model is loaded."""
    store = np.float32 if precision == "float32" else np.float16
    u = config.units
    stored: dict[str, npt.NDArray[Any]] = {
        "embedding": _own(w["embedding"], store),
        "dense_t": _own(np.asarray(w["dense_kernel"]).T, store),
        "dense_bias": _own(w["dense_bias"], np.float32),
    }
    for i in range(config.layers):
        stored[f"kernel{i}"] = _gates_ifog(w[f"lstm{i}_kernel"], u).astype(store)
        recurrent = _gates_ifog(w[f"lstm{i}_recurrent"], u)
        if precision == "int8":
            values, scale = _int8_columns(recurrent)
            stored[f"recurrent{i}"] = np.ascontiguousarray(values.T)  # the kernel's layout
            stored[f"recurrent{i}_scale"] = scale
        else:
            stored[f"recurrent{i}"] = _blocked(recurrent.astype(store))
        stored[f"bias{i}"] = _gates_ifog(w[f"lstm{i}_bias"], u)
    return stored


def _expand(
    stored: dict[str, npt.NDArray[Any]], layers: int, int8_products: bool = True
) -> _Weights:
    """The weights the products use: float32 (views of the stored arrays when they are float32
    already), but int8 recurrent matrices as they are where ``int8_products`` asks for the int8
    kernel and it is installed."""

    def f32(name: str) -> FloatArray:
        return np.ascontiguousarray(stored[name], dtype=np.float32)

    def layer(i: int) -> _Layer:
        kernel, bias = f32(f"kernel{i}"), f32(f"bias{i}")
        scale = stored.get(f"recurrent{i}_scale")
        if scale is None:
            return _Layer(kernel, tuple(f32(f"recurrent{i}")), bias)
        values = stored[f"recurrent{i}"]  # (4U, U) int8
        if int8_products and int8_kernel() is not None:
            return _Layer(kernel, (), bias, values, scale)
        widened: FloatArray = values.T.astype(np.float32)
        widened *= scale
        return _Layer(kernel, tuple(_blocked(widened)), bias)

    return _Weights(
        f32("embedding"),
        tuple(layer(i) for i in range(layers)),
        f32("dense_t"),
        f32("dense_bias"),
    )


def _check_runs(symbols: int) -> list[tuple[int, int]]:
    """The story positions the compact check reads: the whole story up to CHECKED_SYMBOLS,
    else CHECKED_SYMBOLS in evenly spaced runs of 128."""
    if symbols <= CHECKED_SYMBOLS:
        return [(0, symbols)]
    run = 128
    starts = np.linspace(0, symbols - run, CHECKED_SYMBOLS // run).astype(int)
    return [(int(start), int(start) + run) for start in starts]


def _story_choices(network: NumpyLSTM, weights: _Weights) -> list[tuple[int, ...]]:
    """What ``weights`` choose first on the story's own windows (see :func:`_check_runs`): per
    window, the best symbol of the vocabulary and the best of the story's continuations of
    each of the window's suffixes (the candidates generation's ``follow_story`` picks among)."""
    index = network.story_index
    assert index is not None
    n = network.config.n_input
    choices: list[tuple[int, ...]] = []
    with single_threaded_blas():
        for start, end in _check_runs(len(index.story)):
            stepper = Stepper(weights, network.config.units, n)
            for position in range(start, end):
                stepper.feed(int(index.story[position]))
                if position - start + 1 < n:
                    continue  # the run's first windows are shorter than the network's
                logits = stepper.logits()
                best = [int(np.argmax(logits))]
                for candidates in index.continuations(stepper.window, n):
                    best.append(int(candidates[np.argmax(logits[candidates])]))
                choices.append(tuple(best))
    return choices


class NumpyLSTM:
    """The trained network in numpy: logits of a context, and the pipelined :class:`Stepper`."""

    def __init__(
        self, model: TrainedModel, *, compact: bool = False, int8_products: bool = True
    ) -> None:
        """``compact``: stored smaller and checked (see the module docstring);
        ``int8_products``: int8 matrices multiplied by the int8 kernel where numba is installed
        (False: widened to float32 and multiplied by BLAS, as without numba; the attribute
        says which a compact int8 network does)."""
        self.config = model.config
        self.int8_products = int8_products
        w = model.weights
        self.left_context = _own(w["left_context"], np.int32)
        # Models saved before the story index have none.
        self.story_index = (
            StoryIndex(*(_own(w[name], np.int32) for name in STORY_ARRAYS))
            if all(name in w for name in STORY_ARRAYS)
            else None
        )
        self._expand_lock = threading.Lock()
        self.precision: Precision = "float32"
        self._stored = _stored_arrays(w, self.config, "float32")
        self._weights: _Weights | None = _expand(self._stored, self.config.layers)
        if compact:
            self.precision, self._stored = self._checked_compact(w)
            self._weights = None if self.compact else self._weights
            if self.precision == "int8" and int8_products:
                # Compiled (or read from numba's cache) at load, not at a reply.
                self.int8_products = int8_kernel() is not None

    def story_choices(self) -> list[tuple[int, ...]]:
        """This network's first choices on the story's own windows (what the compact check
        compares; empty without a story index)."""
        if self.story_index is None:
            return []
        return _story_choices(self, self.weights())

    @property
    def compact(self) -> bool:
        """Whether the weights are stored smaller than float32 (made float32 on use)."""
        return self.precision != "float32"

    def _checked_compact(self, w: dict[str, Any]) -> tuple[Precision, dict[str, npt.NDArray[Any]]]:
        """The smallest storage whose choices match float32's on the story's own windows.

        Tried in order: int8 recurrent matrices, then float16 for all matrices, then float32
        (the arrays stored now). A model without a story index has nothing to check against
        and is stored int8 as it is.
        """
        story = self.story_index
        if story is None or len(story.story) <= self.config.n_input:
            return "int8", _stored_arrays(w, self.config, "int8")
        reference = self._stored
        expected = _story_choices(self, _expand(reference, self.config.layers))
        for precision in ("int8", "float16"):
            stored = _stored_arrays(w, self.config, precision)
            made = _expand(stored, self.config.layers, self.int8_products)
            if _story_choices(self, made) == expected:
                return precision, stored
            logger.info(
                "Compact storage (%s) changes a choice on the story's windows: trying the next",
                precision,
            )
        return "float32", reference

    def weights(self) -> _Weights:
        """The float32 weights the products use (made from compact storage on first use)."""
        weights = self._weights
        if weights is None:
            with self._expand_lock:
                weights = self._weights
                if weights is None:
                    weights = self._weights = _expand(
                        self._stored, self.config.layers, self.int8_products
                    )
        return weights

    def release(self) -> None:
        """Drop the float32 copies of a compact model (a running generation keeps its own
        reference; the next one makes them again)."""
        if self.compact:
            self._weights = None

    @property
    def stored_nbytes(self) -> int:
        """Bytes of the arrays kept for good: the weights as stored, the left-context table
        and the story index (the float32 copies of a compact model not included)."""
        arrays = [*self._stored.values(), self.left_context]
        if self.story_index is not None:
            arrays += [self.story_index.story, self.story_index.order, self.story_index.offsets]
        return sum(int(a.nbytes) for a in arrays)

    @property
    def expanded_nbytes(self) -> int:
        """Bytes of a compact model's float32 copies once made (0 for float32 storage): each
        float16 matrix twice over, each int8 one four times (their scales are not copied)."""
        if not self.compact:
            return 0
        # int8 matrices stay int8 where the int8 kernel multiplies them.
        widening = {np.dtype(np.float16): 2, np.dtype(np.int8): 0 if self.int8_products else 4}
        return sum(widening.get(a.dtype, 0) * int(a.nbytes) for a in self._stored.values())

    def stepper(self) -> Stepper:
        return Stepper(self.weights(), self.config.units, self.config.n_input)

    def logits(self, context: Sequence[int]) -> FloatArray:
        """Logits for the symbol after ``context``, run from a zero state."""
        stepper = self.stepper()
        for symbol in context:
            stepper.feed(int(symbol))
        return stepper.logits()

    def padded_context(self, ids: Sequence[int]) -> list[int]:
        """The context the network sees for a prompt of ids (see model.generation)."""
        n = self.config.n_input
        ids = list(ids)
        if len(ids) >= n or not ids:
            return ids[-n:] if ids else []
        left = [int(s) for s in self.left_context[ids[0]] if s >= 0]
        need = n - len(ids)
        return left[len(left) - need :] + ids if need <= len(left) else left + ids


class Stepper:
    """The states of the context's suffixes (length 1..n_input) per layer, advanced one
    symbol at a time; :meth:`logits` reads the longest suffix, the current window."""

    def __init__(self, weights: _Weights, units: int, n_input: int) -> None:
        self.w = weights
        self.units = units
        self.n = n_input
        self.window: list[int] = []
        # Per layer: h and c of the suffixes, row k = the last k + 1 symbols.
        self.h: list[FloatArray] = []
        self.c: list[FloatArray] = []

    def feed(self, symbol: int) -> None:
        u, w = self.units, self.w
        rows = min(len(self.window) + 1, self.n)
        x: FloatArray = w.embedding[symbol]
        for depth, layer in enumerate(w.layers):
            z = np.empty((rows, 4 * u), dtype=np.float32)
            z[:] = x @ layer.kernel  # one row broadcast at layer 0, one row per suffix above
            if layer.recurrent_int8 is not None:
                # Compiled (model.quantized): the recurrent product, then bias, gates and
                # states in one pass.
                assert layer.recurrent_scale is not None
                c_prev = self.c[depth] if depth < len(self.c) else _NO_ROWS
                if rows > 1:
                    previous = self.h[depth][: rows - 1]
                    int8_product(previous, layer.recurrent_int8, layer.recurrent_scale, z[1:])
                h = np.empty((rows, u), dtype=np.float32)
                c = np.empty((rows, u), dtype=np.float32)
                lstm_gates(z, layer.bias, c_prev, h, c)
                self._keep(depth, h, c)
                x = h
                continue
            z += layer.bias
            if rows > 1:
                h_old = self.h[depth][: rows - 1]
                start = 0
                for block in layer.blocks:
                    end = start + block.shape[1]
                    z[1:, start:end] += h_old @ block
                    start = end
            _sigmoid_(z[:, : 3 * u])
            g = np.tanh(z[:, 3 * u :])
            c = z[:, :u] * g  # i * g
            if rows > 1:
                c[1:] += z[1:, u : 2 * u] * self.c[depth][: rows - 1]  # + f * c
            h = z[:, 2 * u : 3 * u] * np.tanh(c)
            self._keep(depth, h, c)
            x = h
        self.window = [*self.window, symbol][-self.n :]

    def _keep(self, depth: int, h: FloatArray, c: FloatArray) -> None:
        if depth < len(self.h):
            self.h[depth], self.c[depth] = h, c
        else:
            self.h.append(h)
            self.c.append(c)

    def top(self) -> FloatArray:
        """The last layer's output for the current window (zeros before any symbol)."""
        if not self.window:
            return np.zeros(self.units, dtype=np.float32)
        return self.h[-1][len(self.window) - 1]

    def logits(self, candidates: IntArray | None = None) -> FloatArray:
        """Logits of all symbols, or of ``candidates`` only (in their order)."""
        top = self.top()
        if candidates is None:
            return np.asarray(self.w.dense_t @ top + self.w.dense_bias, dtype=np.float32)
        rows = self.w.dense_t[candidates]
        return np.asarray(rows @ top + self.w.dense_bias[candidates], dtype=np.float32)
