"""The model cache: numpy models by channel, bounded by count and by memory, each with the
4-gram index of its stories for the originality share of a continuation.

Each model's size is measured from its arrays at load, counting its first-step table fully
built (see :func:`model_cache_bytes`). A model larger than the byte bound answers but is not
kept. Loading and generation run in the given thread executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.core.api import CacheStats
from bot.core.store import StoryStore
from bot.errors import NoModel
from model import (
    GenerationOptions,
    ModelConfig,
    NumpyLSTM,
    TrainedModel,
    from_bytes,
    generate,
    tokenize,
)
from model.filtering import BlockedSymbols, WordFilter

logger = logging.getLogger(__name__)

NGRAM = 4
MIB = 1 << 20
# Python objects around each word's first-step entry in NumpyLSTM's table, measured with
# tracemalloc on CPython 3.11 (~420 bytes a word at 1 layer): per layer two ndarray headers
# (112 bytes each) and an (h, c) tuple (56); per word the list (88), the int key (28) and a
# dict slot at the table's worst load factor (64).
_FIRST_STEP_LAYER_OVERHEAD = 2 * 112 + 56
_FIRST_STEP_WORD_OVERHEAD = 88 + 28 + 64
_INT_BYTES = 28  # an int object above the 256 CPython keeps shared
# The Python objects around a model's arrays (the entry, TrainedModel, its config and figures,
# ndarray headers): ~5 KB measured with tracemalloc, whatever the model's size.
_MODEL_OVERHEAD = 8 * 1024
# Blocked-symbol tables kept per cached model: one per distinct filter set (server) using it.
FILTER_TABLES = 8


@dataclass
class CachedModel:
    model_id: int
    version: int
    model: TrainedModel
    network: NumpyLSTM
    ngrams: npt.NDArray[np.uint64]  # sorted unique 4-gram codes of the model's stories
    index: dict[str, int]  # symbol -> id, built once per model
    nbytes: int = 0  # model_cache_bytes(), set once at load: it already counts the table's growth
    # The servers' word filters as blocked ids: a few tables sharing one folded vocabulary (the
    # symbols themselves where folding changes nothing). Not counted in ``nbytes``: at most
    # FILTER_TABLES sets of ids and one tuple of the vocabulary's size.
    filter_tables: OrderedDict[WordFilter, BlockedSymbols] = field(default_factory=OrderedDict)
    _tables_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def blocked(self, word_filter: WordFilter) -> BlockedSymbols:
        """The ids ``word_filter`` forbids in this model (kept for the FILTER_TABLES most
        recent filters). Generation threads call it: folding a 20,000-word vocabulary takes
        ~0.1-0.3 s, never on the event loop; the lock guards the tables, not the building."""
        with self._tables_lock:
            table = self.filter_tables.get(word_filter)
            if table is not None:
                self.filter_tables.move_to_end(word_filter)
                return table
            shared = next(iter(self.filter_tables.values())).folded if self.filter_tables else None
        table = BlockedSymbols(self.model.vocabulary.symbols, word_filter, shared)
        with self._tables_lock:
            self.filter_tables[word_filter] = table
            while len(self.filter_tables) > FILTER_TABLES:
                self.filter_tables.popitem(last=False)
        return table


def first_step_table_bytes(config: ModelConfig) -> int:
    """NumpyLSTM's per-word first-step table once every word has been a context's first word.

    The table fills lazily (a word's entry on its first use as a context's first symbol) and is
    never emptied, so the cache counts it fully built from the start: the bound holds however
    long a model stays cached, at the price of over-counting models that use few words.
    """
    per_layer = 2 * 4 * config.units + _FIRST_STEP_LAYER_OVERHEAD  # float32 h and c
    return config.vocab_size * (config.layers * per_layer + _FIRST_STEP_WORD_OVERHEAD)


def _array_bytes(arrays: Sequence[npt.NDArray[Any]]) -> int:
    # NumpyLSTM keeps views of the stored weights when the dtype already matches: count each
    # buffer once (by its start address), and the copies it makes (left_context as int64) too.
    sizes: dict[int, int] = {}
    for array in arrays:
        address = int(array.__array_interface__["data"][0])
        sizes[address] = max(sizes.get(address, 0), int(array.nbytes))
    return sum(sizes.values())


def model_cache_bytes(
    model: TrainedModel,
    network: NumpyLSTM,
    ngrams: npt.NDArray[np.uint64],
    index: dict[str, int],
) -> int:
    """What one cached model keeps in memory, in bytes.

    Exact for the arrays (the weights' buffers, the network's own copies, the 4-gram index);
    the first-step table by :func:`first_step_table_bytes`; the vocabulary as its symbols
    tuple, each symbol string, and two symbol -> id dicts (the Vocabulary's and ``index``) as
    large as ``index`` (``sys.getsizeof``, which counts a dict's table but not its keys or
    values) with their int ids (28 bytes each; the strings are shared with the tuple); plus a
    fixed 8 KiB for the Python objects around the arrays. Checked against tracemalloc in
    tests/service/test_model_cache.py (within a few percent at load and with a full table).
    """
    arrays: list[npt.NDArray[Any]] = [*model.weights.values(), ngrams]
    arrays += [network.embedding, network.dense_kernel, network.dense_bias, network.left_context]
    for layer in network.layers:
        arrays += list(layer)
    symbols = model.vocabulary.symbols
    vocabulary = sys.getsizeof(symbols) + sum(sys.getsizeof(symbol) for symbol in symbols)
    vocabulary += 2 * (sys.getsizeof(index) + _INT_BYTES * len(index))
    table = first_step_table_bytes(model.config)
    return _array_bytes(arrays) + table + vocabulary + _MODEL_OVERHEAD


def _ngram_codes(ids: npt.NDArray[np.int64], base: int) -> npt.NDArray[np.uint64]:
    if len(ids) < NGRAM:
        return np.zeros(0, dtype=np.uint64)
    values = ids.astype(np.uint64)
    codes = np.zeros(len(ids) - NGRAM + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wraps only for huge vocabularies: a rare false match
        for k in range(NGRAM):
            codes = codes * np.uint64(base) + values[k : len(values) - NGRAM + 1 + k]
    return codes


def _symbol_ids(index: dict[str, int], symbols: Sequence[str]) -> npt.NDArray[np.int64]:
    missing = len(index)
    return np.fromiter((index.get(s, missing) for s in symbols), dtype=np.int64, count=len(symbols))


def load_model(model_id: int, version: int, blob: bytes, texts: Sequence[str]) -> CachedModel:
    model = from_bytes(blob)
    index = {symbol: i for i, symbol in enumerate(model.vocabulary.symbols)}
    codes: list[npt.NDArray[np.uint64]] = []
    for text in texts:
        # Per story: a 4-gram never spans two stories.
        codes.append(_ngram_codes(_symbol_ids(index, tokenize(text)), len(index) + 1))
    ngrams = np.unique(np.concatenate(codes)) if codes else np.zeros(0, dtype=np.uint64)
    network = NumpyLSTM(model)
    size = model_cache_bytes(model, network, ngrams, index)
    return CachedModel(model_id, version, model, network, ngrams, index, size)


def generate_with_share(
    entry: CachedModel,
    prompt: list[str],
    options: GenerationOptions,
    word_filter: WordFilter | None = None,
) -> tuple[list[str], float | None]:
    """The continuation (never a word of ``word_filter``) and its share found in the story."""
    blocked = entry.blocked(word_filter) if word_filter else None
    symbols = generate(entry.model, prompt, options, network=entry.network, blocked=blocked)
    base = len(entry.model.vocabulary) + 1
    codes = _ngram_codes(_symbol_ids(entry.index, [*prompt, *symbols]), base)
    # Only the 4-grams that contain at least one generated symbol.
    generated = codes[max(0, len(prompt) - NGRAM + 1) :]
    if len(generated) == 0 or len(entry.ngrams) == 0:
        return symbols, None if len(generated) == 0 else 0.0
    positions = np.searchsorted(entry.ngrams, generated)
    positions = np.minimum(positions, len(entry.ngrams) - 1)
    found = int(np.count_nonzero(entry.ngrams[positions] == generated))
    return symbols, found / len(generated)


class ModelCache:
    """The channels' active models, least recently used dropped first (see the module doc)."""

    def __init__(
        self, store: StoryStore, executor: Executor, *, max_models: int, megabytes: int
    ) -> None:
        self._store = store
        self._executor = executor
        self.max_models = max_models
        self.megabytes = megabytes
        self._cache: OrderedDict[int, CachedModel] = OrderedDict()
        self._loading: dict[int, asyncio.Future[CachedModel]] = {}

    async def model_for(self, channel_id: int) -> CachedModel:
        """The channel's active model (loaded off the loop on first use); NoModel without one."""
        model_id = await self._store.active_model_id(channel_id)
        if model_id is None:
            raise NoModel("No story has been trained in this channel yet. Use /train first.")
        cached = self._cache.get(channel_id)
        if cached is not None and cached.model_id == model_id:
            self._cache.move_to_end(channel_id)
            return cached
        loading = self._loading.get(model_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(model_id))
            self._loading[model_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(model_id, None))
        entry = await asyncio.shield(loading)
        self._keep(channel_id, entry)
        return entry

    def drop(self, channel_id: int) -> None:
        """Forget the channel's model (it was removed, replaced by an import, or forgotten)."""
        self._cache.pop(channel_id, None)

    def _keep(self, channel_id: int, entry: CachedModel) -> None:
        """Cache ``entry`` as most recently used, then drop the least recently used models
        until both bounds hold. A model larger than the whole byte bound is not kept: it
        answers the request that loaded it and loads again next time (keeping it would break
        the bound; refusing it would leave the channel without answers)."""
        self._cache.pop(channel_id, None)
        max_bytes = self.megabytes * MIB
        if entry.nbytes > max_bytes:
            logger.warning(
                "model %d takes %.0f MiB, more than [cache] megabytes = %d: not cached",
                entry.model_id,
                entry.nbytes / MIB,
                self.megabytes,
            )
            return
        self._cache[channel_id] = entry
        total = sum(cached.nbytes for cached in self._cache.values())
        while len(self._cache) > self.max_models or total > max_bytes:
            _, evicted = self._cache.popitem(last=False)
            total -= evicted.nbytes

    async def _load(self, model_id: int) -> CachedModel:
        blob = await self._store.model_blob(model_id)
        record = await self._store.model(model_id)
        if blob is None or record is None:
            raise NoModel("This channel's model was just removed; try again.")
        texts = await self._store.story_texts(record.story_ids)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, load_model, model_id, record.version, blob, texts
        )

    @property
    def stats(self) -> CacheStats:
        return CacheStats(
            models=len(self._cache),
            bytes=sum(entry.nbytes for entry in self._cache.values()),
            max_models=self.max_models,
            max_bytes=self.megabytes * MIB,
            channels=tuple(self._cache),
        )
