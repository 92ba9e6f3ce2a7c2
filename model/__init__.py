"""fabulist's story model. This package root is TensorFlow-free: it never imports keras.

``model.training`` (with ``training_run``, ``evaluation`` and ``early_stopping``) and
``model.network`` import Keras and are used only by training workers.
"""

from __future__ import annotations

from model.config import ModelConfig, TrainingConfig
from model.errors import (
    ModelError,
    ModelFormatError,
    StoryTooShortError,
    TrainingCancelled,
    TrainingDiverged,
    UnknownWordsError,
)
from model.generation import Generation, GenerationOptions, NumpyLSTM, continue_prompt, generate
from model.serialization import TrainedModel, TrainingFigures, from_bytes, to_bytes
from model.tokenizer import detokenize, tokenize
from model.vocabulary import UNKNOWN, UnknownWord, Vocabulary

__all__ = [
    "UNKNOWN",
    "Generation",
    "GenerationOptions",
    "ModelConfig",
    "ModelError",
    "ModelFormatError",
    "NumpyLSTM",
    "StoryTooShortError",
    "TrainedModel",
    "TrainingCancelled",
    "TrainingConfig",
    "TrainingDiverged",
    "TrainingFigures",
    "UnknownWord",
    "UnknownWordsError",
    "Vocabulary",
    "continue_prompt",
    "detokenize",
    "from_bytes",
    "generate",
    "to_bytes",
    "tokenize",
]
