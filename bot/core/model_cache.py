"""The model cache: numpy models by channel, bounded by count and by memory, each with the
4-gram index of its stories for the originality share of a continuation.

Cached models are stored compact (``NumpyLSTM(compact=True)``: int8 recurrent matrices with a
scale per column, float16 for the rest, about a quarter of float32; issue 16), or wider where
the load-time check finds that compact storage changes a choice on the story's own windows
(model.forward, "Compact storage"). The int8 matrices are multiplied as int8 (model.quantized);
the other matrices compute in float32: their float32 copies are made when a model answers
and kept for the ``HOT_MODELS`` most recently used models only. A model's size counts its
arrays and Python objects (:func:`model_cache_bytes`); a hot model's float32 copies count
too while they exist. A model larger than the byte bound answers but is not kept. Loading and
generation run in the given thread executor, never on the event loop.

The 4-gram index comes from the story index stored with the weights (the story's symbol ids:
nothing to tokenize again, and the stories are not read); models saved before it have their
stories read and tokenized at load.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from bot.core.api import CacheStats
from bot.core.store import StoryStore
from bot.errors import NoModel
from model import (
    Generation,
    GenerationOptions,
    NumpyLSTM,
    TrainedModel,
    continue_prompt,
    from_bytes,
    tokenize,
)
from model.filtering import BlockedSymbols, WordFilter
from model.quantized import int8_kernel
from model.serialization import STORY_ARRAYS
from model.vocabulary import UNKNOWN

logger = logging.getLogger(__name__)

NGRAM = 4
MIB = 1 << 20
# Models whose float32 copies are kept: a reply on one of them computes at once; on another it
# first makes them (~2 ms for an article model on a quiet core). Four times the default
# generation threads, so that the channels answering in turn stay hot.
HOT_MODELS = 8
_INT_BYTES = 28  # an int object above the 256 CPython keeps shared
# The Python objects around a model's arrays (the entry, TrainedModel, its config and figures,
# NumpyLSTM and its story index, ndarray headers): ~5 KB measured with tracemalloc, whatever
# the model's size.
_MODEL_OVERHEAD = 8 * 1024

# Blocked-symbol tables kept per cached model: one per distinct filter set (server) using it.
FILTER_TABLES = 8


@dataclass
class CachedModel:
    model_id: int
    version: int
    model: TrainedModel  # config, vocabulary and figures: its weights are dropped at load
    network: NumpyLSTM
    ngrams: npt.NDArray[np.uint64]  # sorted unique 4-gram codes of the model's stories
    index: dict[str, int]  # symbol -> id, built once per model
    nbytes: int = 0  # model_cache_bytes(), set once at load
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

    @property
    def hot_nbytes(self) -> int:
        """The float32 copies the model makes to answer (counted while it is hot)."""
        return self.network.expanded_nbytes


def model_cache_bytes(
    model: TrainedModel,
    network: NumpyLSTM,
    ngrams: npt.NDArray[np.uint64],
    index: dict[str, int],
) -> int:
    """What one cached model keeps in memory between replies, in bytes.

    Exact for the arrays (the network's stored weights, left-context table and story index,
    the 4-gram index); the vocabulary as its symbols tuple, each symbol string, and two
    symbol -> id dicts (the Vocabulary's and ``index``) as large as ``index``
    (``sys.getsizeof``, which counts a dict's table but not its keys or values) with their int
    ids (28 bytes each; the strings are shared with the tuple); plus a fixed 8 KiB for the
    Python objects around the arrays. The float32 copies of a hot model are not included
    (:attr:`CachedModel.hot_nbytes`). Checked against tracemalloc in
    tests/service/test_model_cache.py.
    """
    symbols = model.vocabulary.symbols
    vocabulary = sys.getsizeof(symbols) + sum(sys.getsizeof(symbol) for symbol in symbols)
    vocabulary += 2 * (sys.getsizeof(index) + _INT_BYTES * len(index))
    return network.stored_nbytes + int(ngrams.nbytes) + vocabulary + _MODEL_OVERHEAD


def _ngram_codes(ids: npt.NDArray[np.int64], base: int) -> npt.NDArray[np.uint64]:
    if len(ids) < NGRAM:
        return np.zeros(0, dtype=np.uint64)
    values = ids.astype(np.uint64)
    codes = np.zeros(len(ids) - NGRAM + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wraps only for huge vocabularies: a rare false match
        for k in range(NGRAM):
            codes = codes * np.uint64(base) + values[k : len(values) - NGRAM + 1 + k]
    return codes


def _symbol_ids(
    model: TrainedModel, index: dict[str, int], symbols: Sequence[str]
) -> npt.NDArray[np.int64]:
    # A word outside the vocabulary: <unk> when it has one (as the story index spells it),
    # otherwise one id past the vocabulary.
    vocabulary = model.vocabulary
    missing = vocabulary.id_of(UNKNOWN) if vocabulary.has_unknown else len(index)
    return np.fromiter((index.get(s, missing) for s in symbols), dtype=np.int64, count=len(symbols))


def has_story_index(model: TrainedModel) -> bool:
    """Whether the model's weights hold its stories' symbol ids (models saved since issue 11)."""
    return all(name in model.weights for name in STORY_ARRAYS)


def cached_model(
    model_id: int, version: int, model: TrainedModel, texts: Sequence[str]
) -> CachedModel:
    """The cache entry of a loaded model. ``texts`` (its stories) are read only for a model
    saved without a story index."""
    index = {symbol: i for i, symbol in enumerate(model.vocabulary.symbols)}
    base = len(index) + 1
    if has_story_index(model):
        # The stories' ids as training read them, one after the other: a 4-gram across the
        # boundary of two appended stories counts too (3 per boundary; training's windows
        # span it as well).
        codes = [_ngram_codes(np.asarray(model.weights["story"], dtype=np.int64), base)]
    else:
        # Per story: a 4-gram never spans two stories.
        codes = [_ngram_codes(_symbol_ids(model, index, tokenize(text)), base) for text in texts]
    ngrams = np.unique(np.concatenate(codes)) if codes else np.zeros(0, dtype=np.uint64)
    network = NumpyLSTM(model, compact=True)
    # The network holds copies of what it needs: the weights (views of the whole blob) can go.
    kept = replace(model, weights={})
    size = model_cache_bytes(kept, network, ngrams, index)
    return CachedModel(model_id, version, kept, network, ngrams, index, size)


def load_model(model_id: int, version: int, blob: bytes, texts: Sequence[str]) -> CachedModel:
    return cached_model(model_id, version, from_bytes(blob), texts)


def generate_with_share(
    entry: CachedModel,
    prompt: list[str],
    options: GenerationOptions,
    word_filter: WordFilter | None = None,
    avoid: Sequence[Sequence[str]] = (),
) -> tuple[Generation, float | None]:
    """The continuation (never a word of ``word_filter``, nor a 4-gram of the ``avoid``
    replies) and its share found in the story."""
    blocked = entry.blocked(word_filter) if word_filter else None
    generation = continue_prompt(
        entry.model, prompt, options, network=entry.network, blocked=blocked, avoid=avoid
    )
    base = len(entry.model.vocabulary) + 1
    # The 4-grams over what the network continued: the prompt's known words it read, then
    # the reply (an unknown word the reply shows would make every 4-gram around it "new").
    context = generation.context
    symbols = _symbol_ids(entry.model, entry.index, generation.symbols)
    codes = _ngram_codes(np.concatenate([np.asarray(context, dtype=np.int64), symbols]), base)
    # Only the 4-grams that contain at least one generated symbol.
    generated = codes[max(0, len(context) - NGRAM + 1) :]
    if len(generated) == 0 or len(entry.ngrams) == 0:
        return generation, None if len(generated) == 0 else 0.0
    positions = np.searchsorted(entry.ngrams, generated)
    positions = np.minimum(positions, len(entry.ngrams) - 1)
    found = int(np.count_nonzero(entry.ngrams[positions] == generated))
    return generation, found / len(generated)


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
        # The models allowed to keep their float32 copies, most recently used last (by id:
        # one model may serve a channel and, for a moment, a request that just loaded it).
        self._hot: OrderedDict[int, CachedModel] = OrderedDict()

    async def prepare(self) -> None:
        """Load the int8 kernels now, before anything is served: their first use in a process
        takes ~0.5 s (2.5 s where numba's cache has no copy yet); with the product's kernel
        alone it held the GIL for ~0.1 s (numba's import and cache read), which stalled the
        event loop and every reply waiting on the first model load (issue 27)."""
        started = time.monotonic()
        # Without numba int8_kernel() has warned already: nothing more to say.
        if await asyncio.get_running_loop().run_in_executor(self._executor, int8_kernel):
            logger.info(
                "generation: int8 kernel ready in %.0f ms", (time.monotonic() - started) * 1000
            )

    async def model_for(self, channel_id: int) -> CachedModel:
        """The channel's active model (loaded off the loop on first use); NoModel without one."""
        model_id = await self._store.active_model_id(channel_id)
        if model_id is None:
            raise NoModel("No story has been trained in this channel yet. Use /train first.")
        cached = self._cache.get(channel_id)
        if cached is not None and cached.model_id == model_id:
            self._cache.move_to_end(channel_id)
            self._warm(cached)
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
        entry = self._cache.pop(channel_id, None)
        if entry is not None:
            self._cool(entry)

    def _warm(self, entry: CachedModel) -> None:
        """``entry`` answers now: keep its float32 copies, release the least recently used
        model's beyond HOT_MODELS."""
        self._hot[entry.model_id] = entry
        self._hot.move_to_end(entry.model_id)
        while len(self._hot) > HOT_MODELS:
            _, cold = self._hot.popitem(last=False)
            cold.network.release()

    def _cool(self, entry: CachedModel) -> None:
        if self._hot.get(entry.model_id) is entry:
            del self._hot[entry.model_id]
        entry.network.release()

    def _total(self) -> int:
        cached = sum(entry.nbytes for entry in self._cache.values())
        return cached + sum(entry.hot_nbytes for entry in self._hot.values())

    def _keep(self, channel_id: int, entry: CachedModel) -> None:
        """Cache ``entry`` as most recently used, then drop the least recently used models
        until both bounds hold (a hot model's float32 copies count). A model larger than the
        whole byte bound is not kept: it answers the request that loaded it and loads again
        next time (keeping it would break the bound; refusing it would leave the channel
        without answers)."""
        previous = self._cache.pop(channel_id, None)
        if previous is not None and previous is not entry:
            self._cool(previous)
        max_bytes = self.megabytes * MIB
        if entry.nbytes + entry.hot_nbytes > max_bytes:
            logger.warning(
                "model %d takes %.0f MiB, more than [cache] megabytes = %d: not cached",
                entry.model_id,
                (entry.nbytes + entry.hot_nbytes) / MIB,
                self.megabytes,
            )
            return
        self._cache[channel_id] = entry
        self._warm(entry)
        while len(self._cache) > self.max_models or self._total() > max_bytes:
            _, evicted = self._cache.popitem(last=False)
            if all(kept is not evicted for kept in self._cache.values()):
                self._cool(evicted)

    async def _load(self, model_id: int) -> CachedModel:
        blob = await self._store.model_blob(model_id)
        record = await self._store.model(model_id)
        if blob is None or record is None:
            raise NoModel("This channel's model was just removed; try again.")
        loop = asyncio.get_running_loop()
        model = await loop.run_in_executor(self._executor, from_bytes, blob)
        del blob
        texts: list[str] = []
        if not has_story_index(model):
            texts = await self._store.story_texts(record.story_ids)
        return await loop.run_in_executor(
            self._executor, cached_model, model_id, record.version, model, texts
        )

    @property
    def stats(self) -> CacheStats:
        return CacheStats(
            models=len(self._cache),
            bytes=self._total(),
            max_models=self.max_models,
            max_bytes=self.megabytes * MIB,
            channels=tuple(self._cache),
        )
