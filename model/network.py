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
) -> tuple[keras.Model, keras.Model]:
    """``(trainer, predictor)``: two models over the same layers (the same weights).

    The predictor maps ids ``[batch, n_input]`` to the logits of the next symbol ``[batch,
    vocab]`` (:func:`build_network`). Without ``all_positions`` the trainer is the predictor.
    With it the trainer predicts after every position of its input (logits ``[batch, n_input,
    vocab]``): one sequence of ``n_input`` symbols then trains ``n_input`` targets, with
    contexts of 1 to ``n_input`` symbols, for about the cost of one window. ``tied``: see the
    module docstring.
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
            name=f"lstm{layer}",
        )
        for layer in range(config.layers)
    ]
    dense = None if tied else keras.layers.Dense(config.vocab_size, name="dense")

    def forward(with_dropout: bool, last_only: bool) -> Any:
        x = embedding(inputs)
        for layer, lstm in enumerate(lstms):
            if with_dropout:
                x = keras.layers.Dropout(dropout, name=f"lstm{layer}_dropout")(x)
            x = lstm(x)
        if last_only:
            x = x[:, -1, :]
        if with_dropout:
            x = keras.layers.Dropout(dropout, name="dense_dropout")(x)
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
