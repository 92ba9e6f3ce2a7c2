"""The model cache is bounded by count and by memory: 1,000 channels stay under the bound.

Real SQLite files, real ``from_bytes`` loads and real numpy generation; the models are stored
without training (random weights in numpy, via the reliability suite's helpers), with different
vocabulary sizes and widths so that their sizes differ.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.config import ConfigError, load_config
from bot.core.api import ChannelRef, ContinueOptions
from bot.core.model_cache import MIB, first_step_table_bytes
from bot.core.model_cache import load_model as _load_model
from bot.core.service import StoryService
from bot.executors.local import TrainingPool
from bot.store.sqlite import SqliteStoryStore as StoryStore
from model import ModelConfig, TrainedModel, to_bytes
from model.serialization import expected_shapes
from tests.reliability.conftest import synthetic_model
from tests.reliability.helpers import seed_model

# channel id -> (vocabulary words, units); sizes measured below, ~1.24 / 1.47 / 0.18 / 1.45 /
# 5.6 MiB: with a 4 MiB bound three of the small ones fit, the last never does.
MODELS = {1: (1000, 48), 2: (1200, 48), 3: (200, 16), 4: (1000, 64), 5: (4000, 64)}
BIG = 5
PROMPT = "w1 w2"
GREEDY = ContinueOptions(length=8)


def _text(words: int) -> str:
    return " ".join(f"w{i}" for i in range(words)) + " ."


def _model(words: int, *, units: int, layers: int, n_input: int = 3) -> TrainedModel:
    base = synthetic_model([f"w{i}" for i in range(words)], units=units, n_input=n_input)
    config = ModelConfig(
        vocab_size=words, n_input=n_input, layers=layers, units=units, embedding_dim=16
    )
    rng = np.random.default_rng(1)
    weights: dict[str, Any] = {}
    for name, (shape, dtype) in expected_shapes(config).items():
        weights[name] = (
            np.full(shape, -1, dtype="<i4")
            if dtype == "<i4"
            else rng.normal(0, 0.1, shape).astype("<f4")
        )
    return TrainedModel(config, base.vocabulary, weights, base.figures)


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
def test_size_counts_every_array_and_the_full_first_step_table(
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
        for word in range(words):  # every word a context's first word: the table is full
            entry.network.logits([word])
        full = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()

    table = first_step_table_bytes(entry.model.config)
    # The arrays by their nbytes: stored weights, the network's int64 copy of left_context,
    # the 4-gram index, and the first-step table's h and c per layer per word.
    weights = sum(array.nbytes for array in model.weights.values())
    left_context = words * (entry.model.config.n_input - 1) * 8
    table_arrays = sum(
        h.nbytes + c.nbytes for steps in entry.network._first.values() for h, c in steps
    )
    assert len(entry.network._first) == words
    assert table_arrays == words * layers * 2 * units * 4
    arrays = weights + left_context + entry.ngrams.nbytes + table_arrays
    # The rest is the vocabulary, the table's Python objects (at most ~1 KB a word together)
    # and 8 KiB for the objects around the arrays.
    assert arrays < entry.nbytes <= arrays + 1000 * words + 8 * 1024
    assert table >= table_arrays
    # Against what Python really allocated (tracemalloc sees numpy's buffers too): the count is
    # honest within 5% plus the fixed 8 KiB, at load and once the table is full.
    assert abs(loaded - (entry.nbytes - table)) <= 0.05 * (entry.nbytes - table) + 8 * 1024
    assert abs(full - entry.nbytes) <= 0.05 * entry.nbytes + 8 * 1024


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
    assert sizes[BIG] > 4 * MIB > sizes[1] + sizes[2] + sizes[3]
    assert sizes[1] + sizes[2] + sizes[3] + sizes[4] > 4 * MIB
    assert sizes[3] < sizes[1] < sizes[4] < sizes[2]


# -- eviction ----------------------------------------------------------------------------------


async def test_byte_bound_evicts_least_recently_used(db: Path, sizes: dict[int, int]) -> None:
    service, store = await _service(db, models=32, megabytes=4)
    try:
        first = {channel_id: await _continue(service, channel_id) for channel_id in (1, 2, 3)}
        assert service.cache_stats.channels == (1, 2, 3)
        assert await _continue(service, 1) == first[1]  # touched: 2 is now the oldest
        assert service.cache_stats.channels == (2, 3, 1)

        await _continue(service, 4)  # 4 more MiB than fit: only 2 has to go
        stats = service.cache_stats
        assert stats.channels == (3, 1, 4)
        assert stats.bytes == sizes[3] + sizes[1] + sizes[4] <= 4 * MIB

        # 2 again: loaded from the database, same model, same greedy words.
        assert await _continue(service, 2) == first[2]
        stats = service.cache_stats
        assert stats.channels == (4, 2)  # 3 and then 1 had to go to make room
        assert stats.bytes == sizes[4] + sizes[2] <= 4 * MIB
    finally:
        await service.close()
        await store.close()


async def test_a_model_larger_than_the_bound_answers_but_is_not_kept(
    db: Path, sizes: dict[int, int]
) -> None:
    service, store = await _service(db, models=32, megabytes=4)
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
    service, store = await _service(db, models=32, megabytes=4)
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
