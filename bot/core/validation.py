"""Checks of every request's options, before any work starts, and the typed job options.

Errors are InvalidOption with a message for the member.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from bot.config import Config
from bot.core.api import MAX_SEED, ContinueOptions, RetrainReason, TrainOptions
from bot.errors import InvalidOption
from bot.messages import OptionName, Phrase
from model import (
    GenerationOptions,
    ModelConfig,
    ModelError,
    TrainingConfig,
    detokenize,
    tokenize,
)
from model.config import MAX_N_INPUT, default_embedding_dim, default_n_input
from model.generation import REPLY_TEMPERATURE

MAX_TOP_K = 10_000
MAX_PROMPT_CHARS = 4_000
# "Continue this" reads a message's last words only: its last characters are plenty.
MESSAGE_TAIL_CHARS = 1_000


def check_int(name: str, value: object, low: int, high: int) -> None:
    """``name`` is the option's (a Discord command's option name where it has one)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidOption(
            "{option} must be a whole number from {low} to {high}.",
            option=OptionName(name),
            low=low,
            high=high,
        )


def check_float(name: str, value: object, low: float, high: float, hint: Phrase | str = "") -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise InvalidOption(
            "{option} must be a number from {low} to {high}{hint}.",
            option=OptionName(name),
            low=format(low, "g"),
            high=format(high, "g"),
            hint=hint,
        )


@dataclass(frozen=True)
class JobOptions:
    """A training job's options as stored with the job (JSON via ``to_dict``/``from_dict``):
    what the member asked for, the model and training configs it resolved to, and why the bot
    queued it if it did."""

    model: dict[str, Any]  # ModelConfig fields except vocab_size
    training: dict[str, Any]  # TrainingConfig fields
    requested: dict[str, Any]  # the TrainOptions fields given (layers, n_input, seed, mode...)
    reason: RetrainReason | None = None

    @property
    def max_epochs(self) -> int:
        return int(self.training["max_epochs"])

    @property
    def seed(self) -> int | None:
        seed = self.requested.get("seed")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else None

    def to_dict(self) -> dict[str, Any]:
        data = {**self.requested, "model": dict(self.model), "training": dict(self.training)}
        if self.reason is not None:
            data["reason"] = asdict(self.reason)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobOptions:
        reason = data.get("reason")
        return cls(
            model=dict(data.get("model") or {}),
            training=dict(data.get("training") or {}),
            requested={k: v for k, v in data.items() if k not in ("model", "training", "reason")},
            reason=RetrainReason(**reason) if isinstance(reason, dict) else None,
        )


class RequestChecks:
    """The checks that depend on the configuration (defaults and limits)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def train_options(self, options: TrainOptions) -> tuple[ModelConfig, TrainingConfig]:
        """The model and training configs of a request; an n_input left to the story's size
        is the short stories' one here (``job_options`` leaves it out of the job)."""
        defaults = self.config.training
        layers = defaults.layers if options.layers is None else options.layers
        n_input = defaults.n_input if options.n_input is None else options.n_input
        check_int("layers", layers, 1, 2)
        if n_input is not None:
            check_int("n_input", n_input, 1, MAX_N_INPUT)
        if options.seed is not None:
            check_int("seed", options.seed, 0, MAX_SEED)
        max_seconds = defaults.max_seconds
        if options.max_seconds is not None:
            check_float("max_seconds", options.max_seconds, 1, defaults.max_seconds)
            max_seconds = float(options.max_seconds)
        if options.mode not in ("replace", "append"):
            raise InvalidOption("mode must be replace or append.")
        training: dict[str, Any] = {
            "max_epochs": defaults.max_epochs,
            "max_seconds": max_seconds,
            "seed": options.seed,
        }
        for name in ("batch_size", "learning_rate", "optimizer"):
            if getattr(defaults, name) is not None:
                training[name] = getattr(defaults, name)
        try:
            model = ModelConfig(
                vocab_size=2,
                n_input=n_input or default_n_input(0),
                layers=layers,
                units=defaults.units,
                embedding_dim=defaults.embedding_dim or default_embedding_dim(0),
            )
            return model, TrainingConfig(**training)
        except ModelError as exc:
            # The checks above keep the options in range; the model's own (English) words are
            # the last resort.
            raise InvalidOption.untranslated(str(exc)) from exc

    def job_options(self, options: TrainOptions, reason: RetrainReason | None = None) -> JobOptions:
        """Checked options resolved against the defaults (InvalidOption if out of range)."""
        model_config, training_config = self.train_options(options)
        # An n_input neither asked for nor configured is left to the story's size (training).
        omitted = {"vocab_size"}
        if options.n_input is None and self.config.training.n_input is None:
            omitted.add("n_input")
        if self.config.training.embedding_dim is None:
            omitted.add("embedding_dim")
        return JobOptions(
            model={k: v for k, v in model_config.to_dict().items() if k not in omitted},
            training=asdict(training_config),
            requested={k: v for k, v in asdict(options).items() if v is not None},
            reason=reason,
        )

    def continue_options(self, options: ContinueOptions) -> GenerationOptions:
        limits = self.config.limits
        length = limits.default_continuation_symbols if options.length is None else options.length
        check_int("length", length, 1, limits.continuation_symbols)
        # Unseeded, a sampled reply draws a new seed each time (issue 23: varied replies).
        default = min(REPLY_TEMPERATURE, limits.max_temperature)
        temperature = default if options.temperature is None else options.temperature
        check_float(
            "temperature",
            temperature,
            0,
            limits.max_temperature,
            Phrase(" (0 always picks the likeliest word)"),
        )
        if options.seed is not None:
            check_int("seed", options.seed, 0, MAX_SEED)
        if options.top_k is not None:
            check_int("top_k", options.top_k, 1, MAX_TOP_K)
        return GenerationOptions(
            length=length, temperature=float(temperature), top_k=options.top_k, seed=options.seed
        )

    def message_prompt(self, text: str) -> str:
        """The last words of a message, as the prompt that continues it ("Continue this"):
        as many symbols as the largest context any model reads, within the prompt limit."""
        tokens = tokenize(text[-MESSAGE_TAIL_CHARS:])
        if not any(any(ch.isalnum() for ch in token) for token in tokens):
            raise InvalidOption("That message has no words to continue.")
        keep = min(MAX_N_INPUT, self.config.limits.prompt_symbols)
        return detokenize(tokens[-keep:])

    def prompt(self, prompt: str) -> list[str]:
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidOption(
                "The prompt is too long (over {limit} characters).", limit=MAX_PROMPT_CHARS
            )
        tokens = tokenize(prompt)
        if not any(_visible(token) for token in tokens):
            # Zero-width characters alone (U+200B, U+2060, ...) are symbols, but no word.
            raise InvalidOption("Give at least one word to continue from.")
        limit = self.config.limits.prompt_symbols
        if len(tokens) > limit:
            raise InvalidOption(
                "The prompt has {count} words and punctuation marks; the limit is {limit}.",
                count=len(tokens),
                limit=limit,
            )
        return tokens


def _visible(token: str) -> bool:
    """Whether ``token`` shows anything: a character outside Unicode's format controls (Cf)."""
    return any(unicodedata.category(ch) != "Cf" for ch in token)
