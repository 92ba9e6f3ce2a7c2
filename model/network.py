"""The Keras 3 network: Embedding -> LSTM (1 or 2 layers) -> Dense logits.

Only ``keras.*`` APIs, so it runs on the TensorFlow and the JAX backend alike. The weights
map one-to-one onto the named arrays of :mod:`model.serialization` (``extract_weights`` /
``assign_weights``), which the numpy forward pass of :mod:`model.generation` reads.

A *tied* network (``build_networks(..., tied=True)``, long stories: ``TrainingConfig.
tie_min_symbols``) trains its output layer as ``projection @ embedding.T`` (Press & Wolf 2017,
Inan et al. 2017): the words' input and output vectors are one matrix, which on a small book
is a strong regularizer. ``extract_weights`` stores the product as the ordinary Dense kernel,
so a checkpoint, the numpy forward pass and ``assign_weights`` (into an untied network) do not
know the difference.

Long stories train with XLA (``build_networks(..., compiled=True)``): the LSTMs are unrolled
(their few steps become straight-line code XLA fuses, not a while loop) and dropout draws its
masks from an integer hash (:class:`HashDropout`), because XLA's random-number generator is slow
on the CPU. Measured on Grimm (``bench/bench_books.py``, 2-3 epochs, training windows/s): 5,109
without XLA; with XLA and the LSTM as a loop, 2,347 with Keras' Dropout and 4,008 with
HashDropout; with XLA, unrolled LSTMs and HashDropout 6,524, as fast as with no dropout at all
(6,473).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import numpy.typing as npt

from model.config import ModelConfig


def build_network(config: ModelConfig, dropout: float = 0.0) -> keras.Model:
    """A fresh, uncompiled model: int ids ``[batch, n_input]`` -> logits ``[batch, vocab]``.

    ``dropout`` > 0 adds Dropout layers (no weights) on the input of every LSTM layer and on
    the input of the Dense layer. They act in training steps only; at inference they are the
    identity, so the numpy forward pass stays exact.

    Initial weights come from Keras' global seed; call ``keras.utils.set_random_seed`` first
    for a reproducible model.
    """
    return build_networks(config, dropout)[1]


class HashDropout(keras.layers.Layer):
    """Dropout whose mask bits are an integer hash of the element's index and a per-step key.

    The same job as ``keras.layers.Dropout`` (training only: zero each input with probability
    ``rate``, scale the rest by ``1 / (1 - rate)``; the identity at inference), with a random
    source XLA compiles into a few vectorized integer operations per element: two rounds of
    Wellons' "lowbias32" hash of the element's index, keyed by the layer's own Keras
    ``SeedGenerator`` (its seed, then its counter, which advances once per training step: the
    masks change every step, differ between layers, and a seeded run repeats them).
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training or self.rate <= 0.0:
            return inputs
        key = keras.ops.cast(self.seed_generator.next(), "uint32")
        index = keras.ops.cast(keras.ops.arange(keras.ops.size(inputs)), "uint32")
        bits = _lowbias32(index * _u32(0x9E3779B9) + key[0])
        bits = _lowbias32(keras.ops.bitwise_xor(bits, key[1]))
        threshold = _u32(min(int((1.0 - self.rate) * 2**32), 2**32 - 1))
        keep = keras.ops.reshape(bits < threshold, keras.ops.shape(inputs))
        return keras.ops.where(keep, inputs / (1.0 - self.rate), keras.ops.zeros_like(inputs))


def _u32(value: int) -> Any:
    return keras.ops.cast(value, "uint32")


def _lowbias32(x: Any) -> Any:
    """Chris Wellons' 32-bit integer hash (its multiplications wrap modulo 2**32)."""
    x = keras.ops.bitwise_xor(x, keras.ops.right_shift(x, _u32(16)))
    x = x * _u32(0x7FEB352D)
    x = keras.ops.bitwise_xor(x, keras.ops.right_shift(x, _u32(15)))
    x = x * _u32(0x846CA68B)
    return keras.ops.bitwise_xor(x, keras.ops.right_shift(x, _u32(16)))


class TiedEmbedding(keras.layers.Layer):
    """The embedding of a tied network, which also computes its output logits.

    Called on ids it returns their vectors; called with ``logits=True`` on LSTM outputs
    ``[..., units]`` it returns ``outputs @ projection @ embeddings.T + bias``.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size, self.embedding_dim, self.units = vocab_size, embedding_dim, units

    def build(self, input_shape: Any = None) -> None:
        self.embeddings = self.add_weight(
            shape=(self.vocab_size, self.embedding_dim), initializer="uniform", name="embeddings"
        )
        self.projection = self.add_weight(
            shape=(self.units, self.embedding_dim), initializer="glorot_uniform", name="projection"
        )
        self.bias = self.add_weight(shape=(self.vocab_size,), initializer="zeros", name="bias")

    def call(self, inputs: Any, logits: bool = False) -> Any:
        if logits:
            projected = keras.ops.matmul(inputs, self.projection)
            return keras.ops.matmul(projected, keras.ops.transpose(self.embeddings)) + self.bias
        return keras.ops.take(self.embeddings, keras.ops.cast(inputs, "int32"), axis=0)


def build_networks(
    config: ModelConfig,
    dropout: float = 0.0,
    *,
    all_positions: bool = False,
    tied: bool = False,
    compiled: bool = False,
) -> tuple[keras.Model, keras.Model]:
    """``(trainer, predictor)``: two models over the same layers (the same weights).

    The predictor maps ids ``[batch, n_input]`` to the logits of the next symbol ``[batch,
    vocab]`` (:func:`build_network`). Without ``all_positions`` the trainer is the predictor.
    With it the trainer predicts after every position of its input (logits ``[batch, n_input,
    vocab]``): one sequence of ``n_input`` symbols then trains ``n_input`` targets, with
    contexts of 1 to ``n_input`` symbols, for about the cost of one window. ``tied`` and
    ``compiled`` (for XLA: unrolled LSTMs, :class:`HashDropout`): see the module docstring.
    """
    inputs = keras.Input(shape=(config.n_input,), dtype="int32", name="context")
    # The layers are made in this order (embedding, LSTMs, output) because each one draws its
    # initializers' seeds when it is made: another order trains another seeded model (and the
    # article's Listing 11 needs this one).
    embedding: TiedEmbedding | keras.layers.Embedding = (
        TiedEmbedding(config.vocab_size, config.embedding_dim, config.units, name="embedding")
        if tied
        else keras.layers.Embedding(config.vocab_size, config.embedding_dim, name="embedding")
    )
    lstms = [
        keras.layers.LSTM(
            config.units,
            return_sequences=all_positions or layer < config.layers - 1,
            unroll=compiled,
            name=f"lstm{layer}",
        )
        for layer in range(config.layers)
    ]
    dense = None if tied else keras.layers.Dense(config.vocab_size, name="dense")

    drop = HashDropout if compiled else keras.layers.Dropout

    def forward(with_dropout: bool, last_only: bool) -> Any:
        x = embedding(inputs)
        for layer, lstm in enumerate(lstms):
            if with_dropout:
                x = drop(dropout, name=f"lstm{layer}_dropout")(x)
            x = lstm(x)
        if last_only:
            x = x[:, -1, :]
        if with_dropout:
            x = drop(dropout, name="dense_dropout")(x)
        return embedding(x, logits=True) if dense is None else dense(x)

    if not all_positions:
        network = keras.Model(inputs, forward(dropout > 0, False), name="fabulist")
        return network, network
    # Dropout layers have no weights: the predictor leaves them out (they are the identity).
    trainer = keras.Model(inputs, forward(dropout > 0, False), name="fabulist_trainer")
    predictor = keras.Model(inputs, forward(False, True), name="fabulist")
    return trainer, predictor


def extract_weights(model: keras.Model, config: ModelConfig) -> dict[str, npt.NDArray[Any]]:
    """The network's weights as the named float32 arrays of the serialization format (a tied
    network's output layer as the Dense kernel it computes)."""
    embedding = model.get_layer("embedding")
    weights: dict[str, npt.NDArray[Any]] = {"embedding": _array(embedding.get_weights()[0])}
    for layer in range(config.layers):
        kernel, recurrent, bias = model.get_layer(f"lstm{layer}").get_weights()
        weights[f"lstm{layer}_kernel"] = _array(kernel)
        weights[f"lstm{layer}_recurrent"] = _array(recurrent)
        weights[f"lstm{layer}_bias"] = _array(bias)
    if isinstance(embedding, TiedEmbedding):
        vectors, projection, bias = (_array(w) for w in embedding.get_weights())
        kernel = projection @ vectors.T
    else:
        kernel, bias = model.get_layer("dense").get_weights()
    weights["dense_kernel"] = _array(kernel)
    weights["dense_bias"] = _array(bias)
    return weights


def assign_weights(
    model: keras.Model, config: ModelConfig, weights: dict[str, npt.NDArray[Any]]
) -> None:
    """Load named arrays (e.g. from a saved TrainedModel) into a network built for ``config``."""
    model.get_layer("embedding").set_weights([weights["embedding"]])
    for layer in range(config.layers):
        model.get_layer(f"lstm{layer}").set_weights(
            [
                weights[f"lstm{layer}_kernel"],
                weights[f"lstm{layer}_recurrent"],
                weights[f"lstm{layer}_bias"],
            ]
        )
    model.get_layer("dense").set_weights([weights["dense_kernel"], weights["dense_bias"]])


def _array(value: Any) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(np.asarray(value, dtype=np.float32))
