"""The network's layers for XLA: HashDropout's masks, and which networks a training builds."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from model.network import HashDropout
from tests.model.conftest import CORPORA

SHAPE = (64, 10, 256)  # a training batch of sequences x steps x features


def _masks(layer: HashDropout, calls: int, *, compiled: bool) -> list[np.ndarray]:
    ones = tf.ones(SHAPE)
    step = tf.function(lambda x: layer(x, training=True), jit_compile=compiled)
    return [step(ones).numpy() for _ in range(calls)]


@pytest.mark.parametrize("rate", [0.5, 0.2])
def test_hash_dropout_drops_the_rate_and_keeps_the_expectation(rate: float) -> None:
    layer = HashDropout(rate, seed=7)
    first, second = _masks(layer, 2, compiled=True)
    zero = first == 0
    assert zero.mean() == pytest.approx(rate, abs=0.01)
    assert np.allclose(first[~zero], 1.0 / (1.0 - rate))
    assert first.mean() == pytest.approx(1.0, abs=0.02)
    # The next step draws another mask, independent of this one and of the neighbours.
    assert ((second == 0) == zero).mean() == pytest.approx(rate**2 + (1 - rate) ** 2, abs=0.01)
    flat = zero.reshape(-1)
    assert (flat[1:] & flat[:-1]).mean() == pytest.approx(rate**2, abs=0.01)
    rows = zero.reshape(-1, SHAPE[-1])
    assert (rows[1:] == rows[:-1]).mean() == pytest.approx(rate**2 + (1 - rate) ** 2, abs=0.01)


def test_hash_dropout_is_the_identity_at_inference_and_repeats_with_its_seed() -> None:
    x = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    assert np.array_equal(keras.ops.convert_to_numpy(HashDropout(0.5)(x, training=False)), x)
    # XLA and TensorFlow's own kernels give the same masks: the hash is plain integer math.
    compiled = _masks(HashDropout(0.5, seed=3), 3, compiled=True)
    eager = _masks(HashDropout(0.5, seed=3), 3, compiled=False)
    for a, b in zip(compiled, eager, strict=True):
        assert np.array_equal(a, b)
    other = _masks(HashDropout(0.5, seed=4), 1, compiled=True)[0]
    assert not np.array_equal(other, compiled[0])


def _train_long_story(seed: int | None) -> dict[str, Any]:
    """In a fresh process (as a training worker): two epochs of a story of ``JIT_MIN_WINDOWS``
    windows, with the networks its training built and its held-out losses."""
    from model import TrainingConfig, tokenize
    from model.training_data import prepare_training_data
    from model.training_run import JIT_MIN_WINDOWS, TrainingRun

    text = (CORPORA / "aesops-fables-vernon-jones.txt").read_text(encoding="utf-8")
    tokens = tokenize(text)[: JIT_MIN_WINDOWS + 3_000]
    training = TrainingConfig(seed=seed, max_epochs=2)
    data = prepare_training_data(tokens, {"units": 16, "embedding_dim": 8}, training, 2_000)
    run = TrainingRun(data, training, on_progress=None, should_cancel=None)
    for _ in range(2):  # train_model's loop, bound by epochs
        assert run.train_epoch()
        run.measure_epoch()
    trainer = run.trainer
    return {
        "jit_compile": trainer.jit_compile,
        "dropouts": {type(layer).__name__ for layer in trainer.layers if "dropout" in layer.name},
        "unroll": trainer.get_layer("lstm0").unroll,
        "val_losses": [epoch["val_loss"] for epoch in run.history],
    }


@pytest.mark.parametrize(("seed", "compiled"), [(None, True), (5, False)])
def test_long_stories_train_xla_compiled_unless_seeded(seed: int | None, compiled: bool) -> None:
    # A fresh process: a seeded run turns TensorFlow's op determinism on for good, and Keras
    # does not compile under it.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        built = pool.submit(_train_long_story, seed).result()
    assert built["jit_compile"] is compiled and built["unroll"] is compiled
    assert built["dropouts"] == {"HashDropout" if compiled else "Dropout"}
    first, second = built["val_losses"]
    assert second < first < np.log(2_000)
