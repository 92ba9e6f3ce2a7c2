"""One training task, run inside a trainer process (a local child or a Ray worker).

The same steps for every executor: tokenize the stories, ``model.training.train_model``, and
serialize the model; a training's own failures become outcomes with a message for people. The
model package (and TensorFlow) is imported on the first call, never by the bot process.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

from bot.core.executor import CANCELLED, TrainingOutcome

OUT_OF_MEMORY = "Training ran out of memory; try a smaller story or model."


def import_training_code() -> None:
    """Import ``model.training`` (TensorFlow and Keras) in a trainer process, without matplotlib.

    Keras imports matplotlib where it is installed (its image-gallery helpers), and this project
    installs it for the bot's training plot, which the bot process draws: in a trainer it was a
    sixth of the import's CPU (bench/RESULTS.md, "Test suite", 2026-12-08). ``None`` in
    ``sys.modules`` makes an import of it raise ImportError, which Keras expects. Called by the
    trainer processes' entry points only (a local trainer, a Ray worker's tasks): never in a
    process that may draw.
    """
    if "matplotlib" not in sys.modules:
        sys.modules["matplotlib"] = None  # type: ignore[assignment]
    import model.training  # noqa: F401


def run_training(
    task: Mapping[str, Any],
    on_progress: Callable[[dict[str, Any]], None],
    should_cancel: Callable[[], bool],
) -> dict[str, Any]:
    """Train ``task`` (a ``TrainingTask`` as a dict); the outcome as plain values:

    ``{"state": "done", "blob", "config", "vocabulary", "figures"}``, ``{"state": "cancelled"}``
    or ``{"state": "failed", "error"}``. ``on_progress`` gets ``TrainingProgress`` as a dict.
    """
    from model import ModelError, TrainingCancelled, TrainingConfig, to_bytes, tokenize
    from model.training import train_model

    try:
        if should_cancel():
            raise TrainingCancelled()
        tokens: list[str] = []
        for text in task["texts"]:
            tokens.extend(tokenize(text))
        model = train_model(
            tokens,
            dict(task["model"]),
            TrainingConfig(**task["training"]),
            on_progress=lambda progress: on_progress(dataclasses.asdict(progress)),
            should_cancel=should_cancel,
            vocabulary_max_size=task["vocabulary_max_size"],
        )
        if should_cancel():
            raise TrainingCancelled()
        return {
            "state": "done",
            "blob": to_bytes(model),
            "config": model.config.to_dict(),
            "vocabulary": list(model.vocabulary.to_json()),
            "figures": model.figures.to_dict(),
        }
    except TrainingCancelled:
        return {"state": "cancelled"}
    except ModelError as exc:
        return {"state": "failed", "error": str(exc)}
    except MemoryError:
        return {"state": "failed", "error": OUT_OF_MEMORY}
    except Exception as exc:
        logging.getLogger(__name__).exception("training job %s failed", task.get("job_id"))
        return {"state": "failed", "error": f"Training failed unexpectedly ({type(exc).__name__})."}


def training_outcome(job_id: int, result: Mapping[str, Any]) -> TrainingOutcome:
    """:func:`run_training`'s plain outcome (as it crossed a pipe or Ray) for the bot."""
    if result["state"] == "done":
        return TrainingOutcome(
            job_id,
            "done",
            blob=result["blob"],
            config=result["config"],
            vocabulary=result["vocabulary"],
            figures=result["figures"],
        )
    if result["state"] == "cancelled":
        return TrainingOutcome(job_id, "cancelled", error=CANCELLED)
    return TrainingOutcome(job_id, "failed", error=str(result.get("error")))
