"""The article's training method, as faithfully as practical in Keras 3.

"LSTM by Example using Tensorflow" (2017): the input is the 3 symbol ids as *scalars*
(shape ``[1, 3, 1]``, float), one LSTM of 512 units, a dense layer to the vocabulary, RMSProp
with learning rate 0.001, batch 1, and its window schedule: start at a random offset in
``[0, n_input]``, take the window there, then jump ``n_input + 1`` symbols; restart at a random
offset when the end is reached. Accuracy is the mean over each block of 1000 steps, as the
article displayed it. Differences: one Keras LSTM layer instead of ``rnn.BasicLSTMCell``
(same gates; the cell's constant forget bias of 1 is Keras' initial forget-gate bias of 1,
learnable here), sparse labels instead of one-hot (same loss), and a compiled
``train_on_batch`` step instead of ``session.run``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np

DISPLAY_STEP = 1000


@dataclass(frozen=True)
class ArticleRun:
    steps: int
    seconds: float
    first_step_seconds: float
    seconds_to_90: float | None  # training seconds (excluding the first step) to a >=90% block
    steps_to_90: int | None
    block_accuracies: list[float]


def build_article_network(vocab_size: int, n_input: int = 3, units: int = 512) -> keras.Model:
    inputs = keras.Input(shape=(n_input, 1), dtype="float32")
    x = keras.layers.LSTM(units)(inputs)
    return keras.Model(inputs, keras.layers.Dense(vocab_size)(x))


def train_article_method(
    ids: Sequence[int],
    vocab_size: int,
    *,
    n_input: int = 3,
    max_seconds: float = 300.0,
    seed: int = 1,
    target: float = 0.9,
) -> ArticleRun:
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    network = build_article_network(vocab_size, n_input)
    network.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    data = np.asarray(ids, dtype=np.float32)
    offset = int(rng.integers(0, n_input + 1))
    end_offset = n_input + 1
    steps = 0
    block: list[float] = []
    blocks: list[float] = []
    first_step = 0.0
    start = time.perf_counter()
    reached: tuple[float, int] | None = None
    while True:
        if offset > len(data) - end_offset:
            offset = int(rng.integers(0, n_input + 1))
        x = data[offset : offset + n_input].reshape(1, n_input, 1)
        y = np.asarray([int(data[offset + n_input])], dtype=np.int32)
        t0 = time.perf_counter()
        logs = network.train_on_batch(x, y, return_dict=True)
        if steps == 0:
            first_step = time.perf_counter() - t0
        steps += 1
        block.append(float(logs["accuracy"]))
        offset += n_input + 1
        if len(block) == DISPLAY_STEP:
            blocks.append(float(np.mean(block)))
            block = []
            if blocks[-1] >= target:
                reached = (time.perf_counter() - start - first_step, steps)
                break
        if time.perf_counter() - start >= max_seconds:
            break
    return ArticleRun(
        steps=steps,
        seconds=time.perf_counter() - start,
        first_step_seconds=first_step,
        seconds_to_90=None if reached is None else reached[0],
        steps_to_90=None if reached is None else reached[1],
        block_accuracies=blocks,
    )
