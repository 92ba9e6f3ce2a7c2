"""fabulist's story model. This package root is TensorFlow-free: it never imports keras.

``model.training`` / ``model.network`` import Keras and are used only by training workers.
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
from model.generation import GenerationOptions, NumpyLSTM, generate
from model.serialization import TrainedModel, TrainingFigures, from_bytes, to_bytes
from model.tokenizer import detokenize, tokenize
from model.vocabulary import UNKNOWN, Vocabulary

__all__ = [
    "UNKNOWN",
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
    "UnknownWordsError",
    "Vocabulary",
    "detokenize",
    "from_bytes",
    "generate",
    "to_bytes",
    "tokenize",
]
