"""Exact held-out and training figures of a network (:func:`evaluate`), and the one logit
that smooths the words never seen as a training target (:func:`unseen_logit`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import numpy.typing as npt

from model.windows import batches, even_batch_size

EVAL_BATCH = 2048
# Training windows the unseen words' logit is measured on (EVAL_BATCH until 2026-12-07: on the
# chat story the smaller sample moved the held-out loss by 0.0002 nats, and with even batches
# (eval_batch_size) each epoch's evaluation takes 43 % less; bench/RESULTS.md, issue 23).
UNSEEN_SAMPLE = 512


def eval_batch_size(n_windows: int) -> int:
    """The predict batch :func:`evaluate` uses for ``n_windows`` windows: at most EVAL_BATCH,
    as even as possible (4,780 held-out windows: 3 x 1,594, not 3 x 2,048 with 1,364 of
    padding)."""
    return even_batch_size(n_windows, EVAL_BATCH)


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    correct: int


def evaluate(
    network: keras.Model,
    ids: npt.NDArray[np.int32],
    indices: npt.NDArray[np.int64],
    n_input: int,
    unseen: tuple[npt.NDArray[np.bool_], float] | None = None,
) -> Evaluation:
    """Exact mean cross-entropy and accuracy of ``network`` on the given windows.

    ``unseen`` = (mask over the vocabulary, logit): those logits are replaced first, as
    :func:`unseen_logit` would set them in the committed weights.
    """
    total_loss = 0.0
    correct = 0
    size = eval_batch_size(len(indices))
    for x, y in batches(ids, n_input, indices, size):
        if len(y) < size:
            # Pad to the traced shape instead of tracing predict again for the remainder.
            x = np.concatenate([x, np.zeros((size - len(y), n_input), dtype=x.dtype)])
        logits = np.asarray(network.predict_on_batch(x), dtype=np.float64)[: len(y)]
        if unseen is not None:
            logits[:, unseen[0]] = unseen[1]
        top = logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
        total_loss += float((log_z - logits[np.arange(len(y)), y]).sum())
        correct += int((logits.argmax(axis=1) == y).sum())
    n = max(1, len(indices))
    return Evaluation(loss=total_loss / n, accuracy=correct / n, correct=correct)


def unseen_logit(
    network: keras.Model,
    ids: npt.NDArray[np.int32],
    train_idx: npt.NDArray[np.int64],
    n_input: int,
    mask: npt.NDArray[np.bool_],
    share: float,
) -> float:
    """One logit for every word never seen as a training target, giving them ``share`` in all.

    The softmax pushes such words (held-out-only words of the vocabulary) towards zero
    probability at every step; a constant logit chosen on a sample of training windows
    spreads the Good-Turing share evenly over them, as a smoothed n-gram model would.
    """
    size = min(UNSEEN_SAMPLE, len(train_idx))
    sample = train_idx[np.linspace(0, len(train_idx) - 1, size).astype(np.int64)]
    x = ids[sample[:, None] + np.arange(n_input)]
    logits = np.asarray(network.predict_on_batch(x), dtype=np.float64)[:, ~mask]
    top = logits.max(axis=1, keepdims=True)
    log_seen = float(np.mean(np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]))
    return math.log(share / (int(mask.sum()) * (1.0 - share))) + log_seen
