"""A model saves to versioned bytes without pickle, and every field is validated on load."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import numpy as np
import pytest

from model import ModelConfig, ModelError, ModelFormatError, TrainingConfig, from_bytes, to_bytes
from model.serialization import MAGIC, TrainedModel


def test_roundtrip_keeps_everything(tiny_model: TrainedModel) -> None:
    data = to_bytes(tiny_model)
    assert data.startswith(MAGIC) and b"pickle" not in data
    loaded = from_bytes(data)
    assert loaded.config == tiny_model.config
    assert loaded.vocabulary == tiny_model.vocabulary
    assert loaded.figures == tiny_model.figures
    for name, array in tiny_model.weights.items():
        assert np.array_equal(loaded.weights[name], array)
    assert to_bytes(loaded) == data


def _rewrite(data: bytes, change: Any) -> bytes:
    """Re-encode with a changed header and a fresh digest, to reach the field checks."""
    (length,) = struct.unpack("<I", data[12:16])
    header = json.loads(data[16 : 16 + length])
    change(header)
    raw = json.dumps(header).encode()
    body = data[:12] + struct.pack("<I", len(raw)) + raw + data[16 + length : -32]
    return body + hashlib.sha256(body).digest()


def test_tampering_and_truncation_are_rejected(tiny_model: TrainedModel) -> None:
    data = to_bytes(tiny_model)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    cases = [b"", data[:10], data[:-1], data[:-40], bytes(flipped), b"X" + data[1:], data + b"\0"]
    for bad in cases:
        with pytest.raises(ModelFormatError):
            from_bytes(bad)


@pytest.mark.parametrize(
    "change",
    [
        lambda h: h["config"].update(units=99),
        lambda h: h["config"].update(layers=3),
        lambda h: h["config"].update(extra=1),
        lambda h: h["vocabulary"]["symbols"].pop(),
        lambda h: h["vocabulary"]["symbols"].__setitem__(1, h["vocabulary"]["symbols"][0]),
        lambda h: h["figures"].update(epochs=-1),
        lambda h: h["figures"].pop("loss"),
        lambda h: h["arrays"][0].update(dtype="|O"),
        lambda h: h["arrays"][0].update(offset=4),
        lambda h: h["arrays"][0]["shape"].append(1),
        lambda h: h["arrays"].pop(),
        lambda h: h.update(more=1),
    ],
)
def test_every_header_field_is_validated(tiny_model: TrainedModel, change: Any) -> None:
    with pytest.raises(ModelFormatError):
        from_bytes(_rewrite(to_bytes(tiny_model), change))


def test_version_is_checked(tiny_model: TrainedModel) -> None:
    data = to_bytes(tiny_model)
    body = data[:8] + struct.pack("<I", 2) + data[12:-32]
    with pytest.raises(ModelFormatError, match="version"):
        from_bytes(body + hashlib.sha256(body).digest())


def test_non_finite_weights_are_rejected(tiny_model: TrainedModel) -> None:
    weights = dict(tiny_model.weights)
    weights["dense_bias"] = weights["dense_bias"].copy()
    weights["dense_bias"][0] = np.nan
    with pytest.raises(ModelError):
        to_bytes(
            TrainedModel(tiny_model.config, tiny_model.vocabulary, weights, tiny_model.figures)
        )


def test_configs_validate_and_roundtrip() -> None:
    config = ModelConfig(vocab_size=112, layers=2, n_input=4)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    training = TrainingConfig(seed=5)
    assert TrainingConfig.from_dict(training.to_dict()) == training
    assert TrainingConfig.article().optimizer == "rmsprop"
    for bad in ({"layers": 3}, {"units": 0}, {"n_input": 0}, {"units": True}):
        with pytest.raises(ModelError):
            ModelConfig(vocab_size=10, **bad)
    for bad_training in ({"optimizer": "sgd"}, {"learning_rate": 0}, {"max_seconds": -1}):
        with pytest.raises(ModelError):
            TrainingConfig(**bad_training)
    with pytest.raises(ModelError):
        ModelConfig.from_dict({"vocab_size": 10, "colour": "red"})
