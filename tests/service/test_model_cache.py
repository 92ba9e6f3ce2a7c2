"""The model cache is bounded by count and by memory: 1,000 channels stay under the bound.

Real SQLite files, real ``from_bytes`` loads and real numpy generation; the models are stored
without training (random weights in numpy, via the reliability suite's helpers), with different
vocabulary sizes and widths so that their sizes differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from bot.config import ConfigError, load_config
from bot.core.api import ChannelRef, ContinueOptions
from bot.core.model_cache import MIB
from bot.core.model_cache import load_model as _load_model
from bot.core.service import StoryService
from bot.errors import ShuttingDown
from bot.executors.local import TrainingPool
from bot.store.sqlite import SqliteStoryStore as StoryStore
from model import TrainedModel, to_bytes, tokenize
from model.generation import story_index_arrays
from tests.reliability.helpers import seed_model
from tests.support import synthetic_model

# channel id -> (vocabulary words, units); sizes measured below (compact storage plus the float32
# copies of a hot model), ~0.63 / 0.78 / 0.09 / 0.76 / 2.7 MiB: with a 2 MiB bound three of the
# small ones fit, the last never does.
MODELS = {1: (1000, 48), 2: (1300, 48), 3: (200, 16), 4: (1000, 64), 5: (4000, 64)}
BOUND_MB = 2
BIG = 5
PROMPT = "w1 w2"
GREEDY = ContinueOptions(length=8, temperature=0.0)


def _text(words: int) -> str:
    return " ".join(f"w{i}" for i in range(words)) + " ."


def _model(words: int, *, units: int, layers: int, n_input: int = 3) -> TrainedModel:
    return synthetic_model(
        [f"w{i}" for i in range(words)], units=units, n_input=n_input, seed=1, layers=layers
    )


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "cache.sqlite3"
    store = await StoryStore.open(path)
    try:
        for channel_id, (words, units) in MODELS.items():
            await seed_model(store, channel_id, _text(words), units=units, seed=channel_id)
    finally:
        await store.close()
    return path


async def _service(db: Path, models: int, megabytes: int) -> tuple[StoryService, StoryStore]:
    config = load_config(
        data={
            "storage": {"database": str(db)},
            "cache": {"models": models, "megabytes": megabytes},
            "cooldowns": {"continue_seconds": 0.0},
        },
        environ={},
    )
    store = await StoryStore.open(db)
    service = StoryService(config, store, TrainingPool(1))
    await service.start(warm_workers=False)
    return service, store


@pytest.fixture
async def sizes(db: Path) -> AsyncIterator[dict[int, int]]:
    """Each channel's model size, measured alone in a cache that holds everything."""
    service, store = await _service(db, models=100, megabytes=1024)
    measured: dict[int, int] = {}
    try:
        for channel_id in MODELS:
            before = service.cache_stats.bytes
            await service.continue_story(ChannelRef(100, channel_id), PROMPT, GREEDY)
            measured[channel_id] = service.cache_stats.bytes - before
    finally:
        await service.close()
        await store.close()
    yield measured


async def _continue(service: StoryService, channel_id: int) -> list[str]:
    return (await service.continue_story(ChannelRef(100, channel_id), PROMPT, GREEDY)).symbols


# -- configuration -----------------------------------------------------------------------------


def test_megabytes_defaults_and_is_validated() -> None:
    assert load_config(data={}, environ={}).cache.megabytes == 512
    assert load_config(data={"cache": {"megabytes": 64}}, environ={}).cache.megabytes == 64
    for bad in (0, -1, "big", 1.5, True):
        with pytest.raises(ConfigError, match=r"cache\.megabytes"):
            load_config(data={"cache": {"megabytes": bad}}, environ={})


def test_example_config_sets_megabytes() -> None:
    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    assert load_config(example, environ={}).cache.megabytes == 512


# -- byte accounting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "units", "layers"), [(50, 16, 1), (1000, 48, 1), (3000, 32, 1), (800, 32, 2)]
)
def test_size_counts_every_array_and_the_float32_copies(
    words: int, units: int, layers: int
) -> None:
    model = _model(words, units=units, layers=layers)
    blob = to_bytes(model)
    texts = [_text(words), _text(words // 2)]
    _load_model(1, 1, blob, texts)  # first call: one-time imports and caches out of the way
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        entry = _load_model(1, 1, blob, texts)
        gc.collect()
        loaded = tracemalloc.get_traced_memory()[0] - start
        entry.network.weights()  # the float32 copies a reply makes
        hot = tracemalloc.get_traced_memory()[0] - start
        entry.network.release()
        gc.collect()
        released = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()

    # Stored compact: int8 recurrent matrices with a float32 scale per column, float16 for the
    # other matrices, float32 biases, int32 left context.
    assert entry.model.weights == {}
    floats = sum(a.nbytes for name, a in model.weights.items() if a.dtype == np.float32)
    biases = sum(a.nbytes for name, a in model.weights.items() if name.endswith("bias"))
    recurrent = [a for name, a in model.weights.items() if name.endswith("_recurrent")]
    int8 = sum(a.nbytes for a in recurrent) // 4 + sum(4 * a.shape[1] for a in recurrent)
    halves = (floats - biases - sum(a.nbytes for a in recurrent)) // 2
    left_context = model.weights["left_context"].nbytes
    arrays = halves + int8 + biases + left_context + entry.ngrams.nbytes
    # The rest is the vocabulary (at most ~200 bytes a word) and 8 KiB for the objects around.
    assert arrays < entry.nbytes <= arrays + 200 * words + 8 * 1024
    # The float32 copies: every matrix but the int8 recurrent ones, which the int8 kernel
    # multiplies as they are (model.quantized).
    assert entry.hot_nbytes == floats - biases - sum(a.nbytes for a in recurrent)
    # Against what Python really allocated (tracemalloc sees numpy's buffers too): the count is
    # honest within 5% plus the fixed 8 KiB, at load, with the float32 copies, and after.
    slack = 0.05 * entry.nbytes + 8 * 1024
    assert abs(loaded - entry.nbytes) <= slack
    assert abs(hot - (entry.nbytes + entry.hot_nbytes)) <= slack + 0.05 * entry.hot_nbytes
    assert abs(released - entry.nbytes) <= slack


async def test_stats_sum_the_cached_models(db: Path, sizes: dict[int, int]) -> None:
    service, store = await _service(db, models=100, megabytes=1024)
    try:
        assert service.cache_stats.models == 0 and service.cache_stats.bytes == 0
        for channel_id in (1, 2, 3):
            await _continue(service, channel_id)
        stats = service.cache_stats
        assert (stats.models, stats.channels) == (3, (1, 2, 3))
        assert stats.bytes == sizes[1] + sizes[2] + sizes[3]
        assert (stats.max_models, stats.max_bytes) == (100, 1024 * MIB)
        assert service.cached_models == 3
    finally:
        await service.close()
        await store.close()
    # The figures the other tests rely on.
    assert sizes[BIG] > BOUND_MB * MIB > sizes[1] + sizes[2] + sizes[3]
    assert sizes[1] + sizes[2] + sizes[3] + sizes[4] > BOUND_MB * MIB
    assert sizes[3] < sizes[1] < sizes[4] < sizes[2]


# -- eviction ----------------------------------------------------------------------------------


async def test_byte_bound_evicts_least_recently_used(db: Path, sizes: dict[int, int]) -> None:
    service, store = await _service(db, models=32, megabytes=BOUND_MB)
    try:
        first = {channel_id: await _continue(service, channel_id) for channel_id in (1, 2, 3)}
        assert service.cache_stats.channels == (1, 2, 3)
        assert await _continue(service, 1) == first[1]  # touched: 2 is now the oldest
        assert service.cache_stats.channels == (2, 3, 1)

        await _continue(service, 4)  # more than fit: only 2 has to go
        stats = service.cache_stats
        assert stats.channels == (3, 1, 4)
        assert stats.bytes == sizes[3] + sizes[1] + sizes[4] <= BOUND_MB * MIB

        # 2 again: loaded from the database, same model, same greedy words.
        assert await _continue(service, 2) == first[2]
        stats = service.cache_stats
        assert stats.channels == (4, 2)  # 3 and then 1 had to go to make room
        assert stats.bytes == sizes[4] + sizes[2] <= BOUND_MB * MIB
    finally:
        await service.close()
        await store.close()


async def test_a_model_larger_than_the_bound_answers_but_is_not_kept(
    db: Path, sizes: dict[int, int]
) -> None:
    service, store = await _service(db, models=32, megabytes=BOUND_MB)
    try:
        await _continue(service, 3)
        await _continue(service, 1)
        kept = service.cache_stats
        answers = [await _continue(service, BIG) for _ in range(2)]
        assert answers[0] == answers[1] and len(answers[0]) == GREEDY.length
        assert service.cache_stats == kept  # nothing evicted for it, and it is not cached
        assert kept.bytes == sizes[3] + sizes[1]
    finally:
        await service.close()
        await store.close()


async def test_count_bound_still_holds(db: Path, sizes: dict[int, int]) -> None:
    service, store = await _service(db, models=2, megabytes=1024)
    try:
        first = {channel_id: await _continue(service, channel_id) for channel_id in (1, 2, 3)}
        stats = service.cache_stats
        assert stats.channels == (2, 3) and stats.bytes == sizes[2] + sizes[3]
        assert await _continue(service, 1) == first[1]  # evicted, reloaded
        assert service.cache_stats.channels == (3, 1)
    finally:
        await service.close()
        await store.close()


async def test_a_new_model_replaces_the_cached_one(db: Path, sizes: dict[int, int]) -> None:
    service, store = await _service(db, models=32, megabytes=BOUND_MB)
    try:
        await _continue(service, 3)
        await _continue(service, 1)
        # Channel 3 gets a bigger model (as after /train): the old one's bytes leave with it.
        await seed_model(store, 3, _text(1000), units=48, seed=9)
        await _continue(service, 3)
        stats = service.cache_stats
        assert stats.channels == (1, 3)
        assert stats.bytes == 2 * sizes[1]  # same shapes as channel 1's model
    finally:
        await service.close()
        await store.close()


# -- the 4-gram index --------------------------------------------------------------------------


def test_four_grams_come_from_the_story_index_without_reading_the_story() -> None:
    """Models with a story index build the originality index from its ids (the texts are not
    read); a model saved before it tokenizes its stories, and both give the same index."""
    text = "the cat sat on the mat , the cat ran . the dog sat on the cat ."
    tokens = tokenize(text)
    legacy = synthetic_model(sorted(set(tokens)))
    ids = np.asarray(legacy.vocabulary.encode(tokens), dtype=np.int32)
    indexed = TrainedModel(
        legacy.config,
        legacy.vocabulary,
        {**legacy.weights, **story_index_arrays(ids, len(legacy.vocabulary))},
        legacy.figures,
    )
    from_index = _load_model(1, 1, to_bytes(indexed), ["never read: not a single known word"])
    from_text = _load_model(2, 1, to_bytes(legacy), [text])
    assert len(from_index.ngrams) == len({tuple(tokens[i : i + 4]) for i in range(len(tokens) - 3)})
    np.testing.assert_array_equal(from_index.ngrams, from_text.ngrams)
    assert from_index.network.story_index is not None and from_text.network.story_index is None


async def test_a_continue_during_shutdown_is_told_so(db: Path) -> None:
    """A /continue that reaches the service once close() has begun (the Discord gateway still
    delivers for a moment after SIGTERM) gets the friendly ShuttingDown, not the thread pool's
    RuntimeError (an "unexpected error" reply); one racing close() gets a reply or that."""
    service, store = await _service(db, models=100, megabytes=1024)
    try:
        channel = ChannelRef(100, next(iter(MODELS)))
        racing = asyncio.ensure_future(service.continue_story(channel, PROMPT, GREEDY))
        await service.close()
        # It may have been answered before the threads stopped: both are fine.
        with contextlib.suppress(ShuttingDown):
            await racing
        with pytest.raises(ShuttingDown):
            await service.continue_story(channel, PROMPT, GREEDY)
    finally:
        await service.close()
        await store.close()
