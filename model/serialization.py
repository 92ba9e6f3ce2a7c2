"""A trained model as bytes (one SQLite BLOB) and back, without pickle or TensorFlow.

Format, version 1::

    b"FABULIST"                  8-byte magic
    uint32 little-endian         format version (1)
    uint32 little-endian         header length H
    H bytes                      UTF-8 JSON header: config, vocabulary, figures and, per array,
                                 name / dtype ("<f4" or "<i4") / shape / offset / nbytes
    arrays                       raw little-endian array data, each at its header offset
    32 bytes                     SHA-256 of everything before it

:func:`from_bytes` checks the digest, the header's every field, that the arrays are exactly
the ones the config needs with the right shapes and finite values, and raises
:class:`~model.errors.ModelFormatError` on anything wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from model.config import ModelConfig
from model.errors import ModelError, ModelFormatError
from model.vocabulary import Vocabulary

MAGIC = b"FABULIST"
FORMAT_VERSION = 1
_DIGEST = 32
_DTYPES = {"<f4": np.dtype("<f4"), "<i4": np.dtype("<i4")}
_MAX_HEADER = 64 << 20
# Optional int32 arrays: the training story's ids, its positions sorted by symbol and each
# symbol's start in that order (model.generation.StoryIndex). Models saved before them load
# without them and generate without following the story.
STORY_ARRAYS = ("story", "story_order", "story_offsets")


@dataclass(frozen=True)
class TrainingFigures:
    """What training measured; JSON-able (``to_dict``/``from_dict``)."""

    symbols: int
    windows: int
    learnable_windows: int
    epochs: int
    seconds: float
    loss: float
    accuracy: float
    learnable_accuracy: float
    val_accuracy: float | None = None
    val_perplexity: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    val_loss: float | None = None
    best_epoch: int | None = None
    stopped: str = ""  # "learned" | "plateau" | "max_epochs" | "max_seconds"
    training_windows: int | None = None
    validation_windows: int | None = None
    vocabulary_size: int | None = None
    vocabulary_cap: int | None = None
    covered_share: float | None = None
    windows_per_second: float | None = None
    first_step_seconds: float | None = None  # the first training step, including its tracing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> TrainingFigures:
        if not isinstance(data, dict):
            raise ModelError("Training figures must be a JSON object.")
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ModelError(f"Unknown training figure fields: {', '.join(sorted(unknown))}.")
        try:
            figures = cls(**data)
        except TypeError as exc:
            raise ModelError(f"Training figures are incomplete: {exc}") from exc
        figures._validate()
        return figures

    def _validate(self) -> None:
        for name in ("symbols", "windows", "learnable_windows", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ModelError(f"Training figure {name} must be a whole number >= 0.")
        for name in ("seconds", "loss", "accuracy", "learnable_accuracy"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ModelError(f"Training figure {name} must be a number.")
        if not isinstance(self.history, list) or not all(isinstance(h, dict) for h in self.history):
            raise ModelError("Training history must be a list of objects.")
        if not isinstance(self.stopped, str):
            raise ModelError("Training figure 'stopped' must be a string.")


@dataclass(frozen=True)
class TrainedModel:
    config: ModelConfig
    vocabulary: Vocabulary
    weights: dict[str, npt.NDArray[Any]]
    figures: TrainingFigures


def expected_shapes(config: ModelConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    """Array name -> (shape, dtype) the numpy forward pass needs for ``config``."""
    v, e, u, n = config.vocab_size, config.embedding_dim, config.units, config.n_input
    shapes: dict[str, tuple[tuple[int, ...], str]] = {"embedding": ((v, e), "<f4")}
    width = e
    for layer in range(config.layers):
        shapes[f"lstm{layer}_kernel"] = ((width, 4 * u), "<f4")
        shapes[f"lstm{layer}_recurrent"] = ((u, 4 * u), "<f4")
        shapes[f"lstm{layer}_bias"] = ((4 * u,), "<f4")
        width = u
    shapes["dense_kernel"] = ((u, v), "<f4")
    shapes["dense_bias"] = ((v,), "<f4")
    # Most frequent (n_input - 1) symbols before each symbol, -1 = none (see generation).
    shapes["left_context"] = ((v, max(0, n - 1)), "<i4")
    return shapes


def validate_weights(config: ModelConfig, weights: dict[str, npt.NDArray[Any]]) -> None:
    """Raise ModelError unless ``weights`` are exactly the arrays ``config`` needs."""
    shapes = expected_shapes(config)
    story = [name for name in STORY_ARRAYS if name in weights]
    if story and len(story) != len(STORY_ARRAYS):
        raise ModelError(f"Story index arrays are incomplete (only {', '.join(story)}).")
    if set(weights) - set(story) != set(shapes):
        missing = sorted(set(shapes) - set(weights))
        extra = sorted(set(weights) - set(shapes) - set(story))
        raise ModelError(f"Wrong weight arrays (missing {missing}, unexpected {extra}).")
    for name, (shape, dtype) in shapes.items():
        array = weights[name]
        if array.shape != shape or array.dtype != np.dtype(dtype):
            raise ModelError(
                f"Weight {name} has shape {array.shape} {array.dtype}, expected {shape} {dtype}."
            )
        if dtype == "<f4" and not np.isfinite(array).all():
            raise ModelError(f"Weight {name} holds NaN or infinite values.")
    left = weights["left_context"]
    if left.size and (left.min() < -1 or left.max() >= config.vocab_size):
        raise ModelError("left_context holds ids outside the vocabulary.")
    if story:
        _validate_story_index(config, *(weights[name] for name in STORY_ARRAYS))


def _validate_story_index(
    config: ModelConfig,
    story: npt.NDArray[Any],
    order: npt.NDArray[Any],
    offsets: npt.NDArray[Any],
) -> None:
    n, v = len(story), config.vocab_size
    int32 = np.dtype("<i4")
    if not all(a.dtype == int32 and a.ndim == 1 for a in (story, order, offsets)):
        raise ModelError("Story index arrays must be one-dimensional int32.")
    if len(order) != n or len(offsets) != v + 1:
        raise ModelError("Story index arrays have inconsistent lengths.")
    if n and (story.min() < 0 or story.max() >= v or order.min() < 0 or order.max() >= n):
        raise ModelError("Story index holds ids outside the vocabulary or the story.")
    counts = np.bincount(story, minlength=v) if n else np.zeros(v, dtype=np.int64)
    if (
        (n and np.bincount(order, minlength=n).max() != 1)
        or offsets[0] != 0
        or not np.array_equal(np.diff(offsets.astype(np.int64)), counts)
        or (n and (np.diff(story[order].astype(np.int64)) < 0).any())
    ):
        raise ModelError("Story index arrays do not describe the story.")


def to_bytes(model: TrainedModel) -> bytes:
    """Serialize ``model`` (format above). Raises ModelError if the model is inconsistent."""
    if len(model.vocabulary) != model.config.vocab_size:
        raise ModelError("The vocabulary size does not match the model config.")
    weights = {
        name: np.ascontiguousarray(array, dtype=expected_shapes(model.config)[name][1])
        if name in expected_shapes(model.config)
        else array
        for name, array in model.weights.items()
    }
    validate_weights(model.config, weights)
    arrays = []
    offset = 0
    for name in sorted(weights):
        array = weights[name]
        arrays.append(
            {
                "name": name,
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "offset": offset,
                "nbytes": int(array.nbytes),
            }
        )
        offset += int(array.nbytes)
    header = json.dumps(
        {
            "config": model.config.to_dict(),
            "vocabulary": model.vocabulary.to_dict(),
            "figures": model.figures.to_dict(),
            "arrays": arrays,
        },
        ensure_ascii=False,
        allow_nan=True,
    ).encode("utf-8")
    parts = [MAGIC, struct.pack("<II", FORMAT_VERSION, len(header)), header]
    parts.extend(weights[entry["name"]].tobytes() for entry in arrays)  # type: ignore[index]
    body = b"".join(parts)
    return body + hashlib.sha256(body).digest()


def _fail(message: str) -> ModelFormatError:
    return ModelFormatError(f"Not a valid fabulist model: {message}")


def from_bytes(data: bytes) -> TrainedModel:
    """Load a model written by :func:`to_bytes`; ModelFormatError on anything wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail("expected bytes")
    data = bytes(data)
    prefix = len(MAGIC) + 8
    if len(data) < prefix + _DIGEST:
        raise _fail("too short")
    if data[: len(MAGIC)] != MAGIC:
        raise _fail("wrong magic bytes")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise _fail("checksum mismatch (truncated or altered)")
    version, header_length = struct.unpack("<II", data[len(MAGIC) : prefix])
    if version != FORMAT_VERSION:
        raise _fail(f"format version {version}, this build reads {FORMAT_VERSION}")
    if header_length > min(_MAX_HEADER, len(body) - prefix):
        raise _fail("header length out of range")
    try:
        header = json.loads(body[prefix : prefix + header_length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail("header is not JSON") from exc
    if not isinstance(header, dict) or set(header) != {"config", "vocabulary", "figures", "arrays"}:
        raise _fail("header has the wrong fields")
    try:
        config = ModelConfig.from_dict(header["config"])
        vocabulary = Vocabulary.from_json(header["vocabulary"])
        figures = TrainingFigures.from_dict(header["figures"])
    except ModelError as exc:
        raise _fail(str(exc)) from exc
    if len(vocabulary) != config.vocab_size:
        raise _fail("vocabulary size does not match the config")
    payload = body[prefix + header_length :]
    weights = _read_arrays(header["arrays"], payload)
    try:
        validate_weights(config, weights)
    except ModelError as exc:
        raise _fail(str(exc)) from exc
    return TrainedModel(config=config, vocabulary=vocabulary, weights=weights, figures=figures)


def _read_arrays(entries: object, payload: bytes) -> dict[str, npt.NDArray[Any]]:
    if not isinstance(entries, list):
        raise _fail("arrays must be a list")
    weights: dict[str, npt.NDArray[Any]] = {}
    position = 0
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {
            "name",
            "dtype",
            "shape",
            "offset",
            "nbytes",
        }:
            raise _fail("bad array entry")
        name, dtype, shape = entry["name"], entry["dtype"], entry["shape"]
        offset, nbytes = entry["offset"], entry["nbytes"]
        if not isinstance(name, str) or name in weights:
            raise _fail("bad or repeated array name")
        if dtype not in _DTYPES:
            raise _fail(f"array {name} has unsupported dtype")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 31 for d in shape
        ):
            raise _fail(f"array {name} has a bad shape")
        for value in (offset, nbytes):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _fail(f"array {name} has a bad offset or size")
        if offset != position or nbytes != math.prod(shape) * _DTYPES[dtype].itemsize:
            raise _fail(f"array {name} has an inconsistent offset or size")
        if offset + nbytes > len(payload):
            raise _fail(f"array {name} runs past the end")
        array = np.frombuffer(payload, dtype=_DTYPES[dtype], count=math.prod(shape), offset=offset)
        weights[name] = array.reshape(shape)
        position = offset + nbytes
    if position != len(payload):
        raise _fail("trailing bytes after the arrays")
    return weights
