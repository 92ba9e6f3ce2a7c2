"""Hyper-parameters of the network and of training (frozen, JSON round-trip, validated).

Training defaults were chosen by measurement on a 2-core x86-64 machine, 24 GiB (see
``bench/bench_training_speed.py`` and ``bench/RESULTS.md``): Adam with learning
rate 1e-2 reaches all 199 learnable windows of the article's story in ~26 full-batch epochs;
the article's RMSProp 1e-3 with batch 1 needs tens of thousands of steps. ``batch_size`` is an
upper bound: a story with fewer windows trains full-batch.

Regularization for long stories (issue 6; ``bench/bench_books.py``, ``bench/RESULTS.md``). It
applies only when a validation split exists (``min_symbols_for_validation`` symbols or more), so
the article's story (no split) trains exactly as before:

* ``batch_size`` 256 (was 1024): a book of 15k-50k words then gets 4x the updates per epoch;
  at 1024 the held-out loss was still falling when the epochs ran out.
* ``dropout`` 0.5 on the input of every LSTM layer and of the Dense layer (Dropout layers
  without weights; the identity at inference, so the numpy forward pass is unchanged). Under
  XLA (unseeded trainings of ``model.training_run.JIT_MIN_WINDOWS`` windows or more) the masks come
  from an integer hash (``model.network.HashDropout``): XLA's random numbers were the
  bottleneck on the CPU.
* ``weight_decay``: decoupled weight decay of the optimizer; off (it did not help).
* ``plateau_factor`` 0.3: after an epoch that lowered the held-out loss by less than
  ``min_improvement`` nats, multiply the learning rate by this factor; if the loss rose, restore
  the best weights first. (Until 2026-12-01 only a rise lowered it: on whole Grimm the loss
  kept creeping down, 4.271 -> 4.268 -> 4.263, at 1e-2 until the stop, 0.907 x Markov-3;
  lowering it at the first small gain reached 4.205 three epochs later, 0.856 x; bench/RESULTS.md.)
* ``smooth_unseen``: words of the vocabulary never seen as a training target (they occur only
  in the held-out text) get one constant logit that gives them together the Good-Turing share
  of the training targets (singletons / targets) instead of the near-zero probability the
  softmax drives them to; measured on training windows only, applied to the committed weights
  and to the held-out figures alike.

* ``tie_min_symbols`` (issue 11): stories of at least this many symbols (and a split) train
  their output layer as ``projection @ embedding.T`` (:mod:`model.network`), and get
  ``default_embedding_dim``'s 256-wide word vectors instead of 64; None never ties. Held-out
  perplexity, seed 1, untied 64 against tied 256 (Markov-3): Grimm's first 30 KB (7,155 symbols)
  118.7 against 130.1 (127.5; tied 64 148.9, tied 128 143.3), Jacobs (17,700) 151.9* against
  151.3 (169.8), Grimm's first 100 KB (24,105) 86.5 against 83.4 (94.7; untied 256 89.5, tied
  512 82.8), Vernon Jones (48,863) 99.0* against 94.1 (121.4), whole Grimm (122,230) 67.0
  against 63.9 (78.3; tied 512 72.6); * a screening script's untied network, whose initial
  weights were drawn in another order (``bench/RESULTS.md``). Hence 20,000. The committed Dense
  kernel is the product, so checkpoints do not change.

* ``all_positions`` (issue 11): instead of one target per window of ``n_input`` symbols, the
  story is cut into sequences of ``n_input`` symbols (at another random offset every epoch) and
  the LSTM predicts after every position, so each target is trained with a context of 1 to
  ``n_input`` symbols and one LSTM step per target instead of ``n_input``. ``batch_size`` still
  counts targets. With ``default_n_input``'s 10 for long stories it reached a lower held-out
  perplexity than windows of 3 in the same time on Grimm (2 epochs under the same load: 91.3
  against 100.8; Markov-3 77.5), and generation is unchanged (the last position's output).

When training ends (issue 16), besides ``max_epochs`` and the ``max_seconds`` cap: with a split
after ``patience`` epochs in a row that did not help: an epoch that lowered the held-out loss by
less than ``min_improvement`` nats (the plateau rule then lowers the learning rate), or the epoch
right after such a one, at the lowered rate, by less than ``rebound_improvement`` (issue 23,
2026-12-07: replayed over the held-out losses of 19 recorded trainings, stopping there saved 10
of their 182 epochs and never a lower held-out loss; ``bench/RESULTS.md``); without
a split when every learnable window is right, or after ``SATURATED_EPOCHS``
(model.training_run) epochs without one more window right.

None of these change the network's weights' shapes, so none is stored in checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from model.errors import ModelError

OPTIMIZERS = ("adam", "rmsprop")
# The most previous words a model may look at, wherever the bot accepts one (config, /train,
# the service, imports). ModelConfig itself accepts more so that any stored model still loads.
MAX_N_INPUT = 10
# Stories of at least this many symbols are "long": they get a held-out split (TrainingConfig's
# min_symbols_for_validation default) and generation's story order 2 (model.generation).
LONG_STORY_SYMBOLS = 5000
# n_input of long stories when no n_input is asked for (see default_n_input).
LONG_STORY_N_INPUT = 10
# From this many symbols on a story's output layer is tied to its word vectors, which are then
# wider (TrainingConfig.tie_min_symbols, default_embedding_dim; measured in the docstring).
TIED_OUTPUT_SYMBOLS = 20_000
EMBEDDING_DIM = 64
TIED_EMBEDDING_DIM = 256


def default_n_input(symbols: int) -> int:
    """The context length a story of ``symbols`` symbols trains with when none is asked for.

    Short stories keep the article's 3 (its Listing 11 needs it); long ones (a held-out split,
    ``LONG_STORY_SYMBOLS`` or more) get ``LONG_STORY_N_INPUT``, chosen by ``bench/bench_books.py``.
    """
    return LONG_STORY_N_INPUT if symbols >= LONG_STORY_SYMBOLS else 3


def default_embedding_dim(symbols: int) -> int:
    """The word vectors' width for a story of ``symbols`` symbols when none is asked for.

    64 (the article's story trains and generates exactly as before); from
    ``TIED_OUTPUT_SYMBOLS`` on, where the output layer is tied to them, ``TIED_EMBEDDING_DIM``
    (this module's docstring has the figures).
    """
    return TIED_EMBEDDING_DIM if symbols >= TIED_OUTPUT_SYMBOLS else EMBEDDING_DIM


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModelError(f"{name} must be a whole number from {low} to {high}.")


def _check_float(name: str, value: object, low: float, high: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(float(value))
        or not low <= float(value) <= high
    ):
        raise ModelError(f"{name} must be a number from {low:g} to {high:g}.")


def _from_dict(cls: type[Any], data: object) -> Any:
    if not isinstance(data, dict):
        raise ModelError(f"{cls.__name__} must be a JSON object.")
    names = {f.name for f in fields(cls)}
    extra = set(data) - names
    if extra:
        raise ModelError(f"{cls.__name__} has unknown fields: {', '.join(sorted(extra))}.")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ModelError(f"{cls.__name__} is incomplete: {exc}") from exc


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    n_input: int = 3
    layers: int = 1
    units: int = 512
    embedding_dim: int = EMBEDDING_DIM

    def __post_init__(self) -> None:
        _check_int("vocab_size", self.vocab_size, 2, 1_000_000)
        _check_int("n_input", self.n_input, 1, 64)
        _check_int("layers", self.layers, 1, 2)
        _check_int("units", self.units, 1, 4096)
        _check_int("embedding_dim", self.embedding_dim, 1, 4096)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> ModelConfig:
        result: ModelConfig = _from_dict(cls, data)
        return result

    @property
    def parameter_count(self) -> int:
        count = self.vocab_size * self.embedding_dim
        width = self.embedding_dim
        for _ in range(self.layers):
            count += 4 * self.units * (width + self.units + 1)
            width = self.units
        return count + self.units * self.vocab_size + self.vocab_size


@dataclass(frozen=True)
class TrainingConfig:
    optimizer: str = "adam"
    learning_rate: float = 1e-2
    batch_size: int = 256
    max_epochs: int = 500
    max_seconds: float = 600.0
    seed: int | None = None
    validation_fraction: float = 0.1
    min_symbols_for_validation: int = LONG_STORY_SYMBOLS
    clip_norm: float | None = 5.0
    # Regularization of stories with a validation split only (see the module docstring).
    dropout: float = 0.5
    weight_decay: float | None = None
    plateau_factor: float | None = 0.3
    smooth_unseen: bool = True
    all_positions: bool = True
    tie_min_symbols: int | None = TIED_OUTPUT_SYMBOLS
    # XLA-compile trainings of model.training_run.JIT_MIN_WINDOWS windows or more (not seeded ones
    # on TensorFlow, which Keras does not compile under op determinism).
    xla: bool = True
    # Early stop (any story): epochs in a row that do not help before training ends.
    patience: int | None = 2
    min_improvement: float = 0.005
    # The gain the epoch right after a lowered learning rate needs to reset the count.
    rebound_improvement: float = 0.02

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ModelError(f"optimizer must be one of {', '.join(OPTIMIZERS)}.")
        _check_float("learning_rate", self.learning_rate, 1e-7, 1.0)
        _check_int("batch_size", self.batch_size, 1, 1 << 20)
        _check_int("max_epochs", self.max_epochs, 1, 1_000_000)
        _check_float("max_seconds", self.max_seconds, 0.01, 7 * 24 * 3600.0)
        if self.seed is not None:
            _check_int("seed", self.seed, 0, 2**31 - 1)
        _check_float("validation_fraction", self.validation_fraction, 0.0, 0.5)
        _check_int("min_symbols_for_validation", self.min_symbols_for_validation, 0, 1 << 40)
        if self.clip_norm is not None:
            _check_float("clip_norm", self.clip_norm, 1e-6, 1e6)
        _check_float("dropout", self.dropout, 0.0, 0.9)
        if self.weight_decay is not None:
            _check_float("weight_decay", self.weight_decay, 0.0, 1.0)
        if self.plateau_factor is not None:
            _check_float("plateau_factor", self.plateau_factor, 0.01, 1.0)
        if self.tie_min_symbols is not None:
            _check_int("tie_min_symbols", self.tie_min_symbols, 0, 1 << 40)
        for name in ("smooth_unseen", "all_positions", "xla"):
            if not isinstance(getattr(self, name), bool):
                raise ModelError(f"{name} must be true or false.")
        if self.patience is not None:
            _check_int("patience", self.patience, 1, 1_000_000)
        _check_float("min_improvement", self.min_improvement, 0.0, 1.0)
        _check_float("rebound_improvement", self.rebound_improvement, 0.0, 1.0)

    @classmethod
    def article(cls, **overrides: Any) -> TrainingConfig:
        """The article's method: RMSProp, learning rate 0.001, batch 1."""
        values: dict[str, Any] = {
            "optimizer": "rmsprop",
            "learning_rate": 1e-3,
            "batch_size": 1,
            "clip_norm": None,
        }
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> TrainingConfig:
        result: TrainingConfig = _from_dict(cls, data)
        return result
