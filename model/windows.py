"""Training examples: every position of the story gives one window (n_input ids -> the next).

Windows are never materialized as one-hot and never all at once: :func:`batches` gathers
``(x, y)`` for one batch of window indices at a time from the story's id array, so memory is
the story's ids plus one batch (``batch * n_input`` int32s). :func:`sequence_batches` does the
same for sequences of ``n_input`` symbols, every position a target
(``TrainingConfig.all_positions``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int32]


def even_batch_size(n_windows: int, batch_size: int) -> int:
    """The batch size <= ``batch_size`` that splits ``n_windows`` into the fewest, evenest steps."""
    if n_windows <= batch_size:
        return max(1, n_windows)
    steps = -(-n_windows // batch_size)
    return -(-n_windows // steps)


def window_count(n_symbols: int, n_input: int) -> int:
    return max(0, n_symbols - n_input)


def gather(
    ids: IntArray, indices: npt.NDArray[np.integer], n_input: int
) -> tuple[IntArray, IntArray]:
    """Inputs ``[len(indices), n_input]`` and targets ``[len(indices)]`` of the given windows."""
    idx = np.asarray(indices, dtype=np.int64)
    x = ids[idx[:, None] + np.arange(n_input, dtype=np.int64)[None, :]]
    y = ids[idx + n_input]
    return x.astype(np.int32, copy=False), y.astype(np.int32, copy=False)


def batches(
    ids: IntArray,
    n_input: int,
    indices: npt.NDArray[np.integer],
    batch_size: int,
    rng: np.random.Generator | None = None,
    *,
    fill: bool = False,
) -> Iterator[tuple[IntArray, IntArray]]:
    """Yield ``(x, y)`` batches over ``indices`` (shuffled when ``rng`` is given), lazily.

    With ``fill`` the last, short batch is topped up with windows drawn from ``indices`` so that
    every batch has the same shape (a new shape would make Keras trace the step again).
    """
    order = np.asarray(indices, dtype=np.int64)
    if rng is not None:
        order = order[rng.permutation(len(order))]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        if fill and len(chunk) < batch_size and len(order) >= batch_size:
            picker = rng or np.random.default_rng(0)
            extra = order[picker.choice(start, batch_size - len(chunk), replace=False)]
            chunk = np.concatenate([chunk, extra])
        yield gather(ids, chunk, n_input)


def context_groups(ids: IntArray, n_input: int) -> tuple[IntArray, int]:
    """A context id per window (equal contexts share an id) and the number of contexts."""
    n = window_count(len(ids), n_input)
    if n == 0:
        return np.zeros(0, dtype=np.int32), 0
    x, _ = gather(ids, np.arange(n), n_input)
    _, inverse = np.unique(x, axis=0, return_inverse=True)
    groups: IntArray = inverse.reshape(-1).astype(np.int32)
    return groups, int(groups.max()) + 1


def learnable_mask(ids: IntArray, n_input: int) -> npt.NDArray[np.bool_]:
    """Windows a perfect model can get right together.

    One context always yields one prediction, so among windows sharing a context only those
    with the context's most frequent next symbol (ties: first occurrence) can all be right.
    The article's story: 201 windows, 199 learnable ("the cat ." -> some/by and
    "up and said" -> he/that).
    """
    n = window_count(len(ids), n_input)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    groups, _ = context_groups(ids, n_input)
    targets = ids[n_input : n_input + n].astype(np.int64)
    pairs = np.stack([groups.astype(np.int64), targets], axis=1)
    uniq, first_index, inverse, counts = np.unique(
        pairs, axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    inverse = inverse.reshape(-1)
    # Per context pick the (context, target) pair with the largest count, then earliest.
    order = np.lexsort((first_index, -counts, uniq[:, 0]))
    best_of_context = np.full(int(uniq[:, 0].max()) + 1, -1, dtype=np.int64)
    seen = np.zeros_like(best_of_context, dtype=bool)
    for pair in order:
        context = uniq[pair, 0]
        if not seen[context]:
            seen[context] = True
            best_of_context[context] = pair
    mask = best_of_context[groups] == inverse
    return mask


def achievable_correct(groups: IntArray, targets: IntArray, n_groups: int) -> int:
    """Most windows any model can get right: the sum over contexts of the top next-symbol count."""
    if len(groups) == 0:
        return 0
    pairs = groups.astype(np.int64) * (int(targets.max()) + 1) + targets.astype(np.int64)
    uniq, counts = np.unique(pairs, return_counts=True)
    context_of = uniq // (int(targets.max()) + 1)
    best = np.zeros(n_groups, dtype=np.int64)
    np.maximum.at(best, context_of, counts)
    return int(best.sum())


def split_indices(
    n_windows: int, validation_fraction: float, n_input: int, block: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Deterministic train/validation split into contiguous blocks of windows.

    Every k-th block (k = round(1 / fraction)) is held out, so the held-out text is spread
    over the whole book and reproducible without a seed. Training windows whose target lies
    inside a held-out block are dropped (context overlap only leaks inputs, never targets).
    """
    all_idx = np.arange(n_windows, dtype=np.int64)
    if validation_fraction <= 0 or n_windows < 2:
        return all_idx, np.zeros(0, dtype=np.int64)
    every = max(2, round(1.0 / validation_fraction))
    size = block or max(50, n_windows // (every * 20))
    block_of = all_idx // size
    held = (block_of % every) == every - 1
    val = all_idx[held]
    train = all_idx[~held]
    return train, val


def sequence_batches(
    ids: npt.NDArray[np.int32],
    n_input: int,
    starts: npt.NDArray[np.int64],
    batch_size: int,
    rng: np.random.Generator,
) -> Iterator[tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]]:
    """One epoch of ``(x, y)`` batches of ``[batch, n_input]`` sequences and their next symbols.

    The story is cut into sequences at a random offset (every epoch another), so each
    training target comes about once an epoch, with a context of 1 to ``n_input`` symbols.
    Every batch has ``batch_size`` sequences (the last is topped up), one traced shape.
    """
    offset = int(rng.integers(n_input))
    chosen = starts[(starts - offset) % n_input == 0]
    if len(chosen) == 0:
        chosen = starts
    chosen = chosen[rng.permutation(len(chosen))]
    steps = max(1, -(-len(chosen) // batch_size))
    chosen = np.concatenate([chosen, rng.choice(starts, steps * batch_size - len(chosen))])
    span = np.arange(n_input + 1, dtype=np.int64)
    for step in range(steps):
        rows = ids[chosen[step * batch_size : (step + 1) * batch_size, None] + span]
        yield rows[:, :-1], rows[:, 1:]
