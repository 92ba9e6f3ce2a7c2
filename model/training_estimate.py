"""When a training is expected to end (issue 25): the epoch at which the plateau stop
(``TrainingRun.plateaued``) is expected, predicted from the held-out loss so far.

The rule: an epoch that lowers the best held-out loss by less than ``min_improvement`` nats is
stale; ``patience`` stale epochs in a row end the training, and each stale epoch lowers the
learning rate (``TrainingConfig.plateau_factor``), which often buys one more good epoch: the
epoch right after a stale one is stale too unless it gains ``rebound_improvement``
(:mod:`model.early_stopping`).

The estimate, chosen on the per-epoch held-out losses of 14 trainings of five stories (7,000 to
49,000 symbols, ``bench/bench_training_eta.py``, 2026-12-07) and whole Grimm (bench/RESULTS.md,
2026-12-01):

* Before any stale epoch, the gains (each epoch's lowering of the best loss) are fitted to a
  geometric decay ``gain(k) = a * ratio**k`` by least squares on their logarithms, the ratio
  pulled toward ``PRIOR_RATIO`` (worth ``PRIOR_WEIGHT`` gains: after two epochs there is one
  gain and no slope). The first stale epoch is expected where the fitted gain falls under
  ``STALE_GAIN_FACTOR`` x ``min_improvement`` (the held-out loss turns up, overfitting, before
  the gains reach ``min_improvement`` itself), counted in fractional epochs.
* From the first stale epoch on: ``REBOUND_EPOCHS`` good epochs after it (about half the
  trainings gained once more at the lowered rate: 2.5 epochs from the first stale epoch to the
  stop on average over 15 trainings), then ``patience`` stale ones; once a rebound came,
  ``patience`` stale epochs from there.

The stop epochs of unseeded runs vary by a few epochs (the 30 KB Grimm cut: 9 epochs seeded on
2026-12-01, 13 unseeded on 2026-12-07), so the estimate is an expectation, not a promise. Before
``MIN_EPOCHS`` epochs there is no gain to fit: unknown (None). Without the plateau stop
(``patience`` None) the end is the epoch limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MIN_EPOCHS = 2
PRIOR_RATIO = 0.4
PRIOR_WEIGHT = 2.0
RATIO_RANGE = (0.1, 0.9)
STALE_GAIN_FACTOR = 2.0
REBOUND_EPOCHS = 0.5


def _replay(
    val_losses: Sequence[float], min_improvement: float, rebound_improvement: float
) -> tuple[list[float], int, bool]:
    """The plateau rule over the losses: the gains of the best loss from epoch 2 on, the stale
    epochs in a row at the end, and whether a streak of stale epochs was broken before."""
    best = val_losses[0]
    gains: list[float] = []
    stale = 0
    rebounded = False
    rate_lowered = False
    for loss in val_losses[1:]:
        needed = max(min_improvement, rebound_improvement) if rate_lowered else min_improvement
        if loss < best - needed:
            rebounded = rebounded or stale > 0
            stale = 0
        else:
            stale += 1
        rate_lowered = loss >= best - min_improvement
        gains.append(best - loss)
        best = min(best, loss)
    return gains, stale, rebounded


def _decay(gains: Sequence[float]) -> tuple[float, float]:
    """``(fitted gain of the last epoch, ratio)`` of the geometric decay of ``gains`` (> 0)."""
    logs = [math.log(gain) for gain in gains]
    n = len(logs)
    mean_x, mean_y = (n - 1) / 2, sum(logs) / n
    sxx = sum((x - mean_x) ** 2 for x in range(n))
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(logs)) / sxx if sxx else 0.0
    log_ratio = (PRIOR_WEIGHT * math.log(PRIOR_RATIO) + (n - 1) * slope) / (PRIOR_WEIGHT + n - 1)
    low, high = RATIO_RANGE
    ratio = min(high, max(low, math.exp(log_ratio)))
    # The line through the gains' mean with that slope, at the last epoch.
    return math.exp(mean_y + math.log(ratio) * (n - 1 - mean_x)), ratio


def expected_epochs(
    val_losses: Sequence[float],
    *,
    min_improvement: float,
    patience: int | None,
    max_epochs: int,
    budget_epochs: float = math.inf,
    rebound_improvement: float = 0.0,
) -> float | None:
    """The epoch count the plateau stop is expected at, given the held-out loss of each epoch
    so far (``val_losses[0]`` is epoch 1's): at least one epoch more than done, at most
    ``max_epochs``; ``max_epochs`` without a plateau stop (``patience`` None).
    ``rebound_improvement`` as in ``TrainingConfig`` (0: the rule without it). ``budget_epochs``
    (fractional) is where the time budget ends the training: no later than that. None before
    ``MIN_EPOCHS`` epochs or with a loss that is not finite."""
    done = len(val_losses)
    if patience is None:
        return min(float(max_epochs), budget_epochs)
    if done < MIN_EPOCHS or not all(map(math.isfinite, val_losses)):
        return None
    gains, stale, rebounded = _replay(val_losses, min_improvement, rebound_improvement)
    if rebounded:
        expected = float(done + patience - stale)
    elif stale:
        expected = float(done + REBOUND_EPOCHS + patience)
    else:
        gain, ratio = _decay(gains)
        threshold = STALE_GAIN_FACTOR * min_improvement
        first_stale = done + max(0.0, math.log(gain / threshold) / math.log(1 / ratio))
        expected = first_stale + REBOUND_EPOCHS + patience
    expected = max(min(expected, float(max_epochs)), float(min(done + 1, max_epochs)))
    return min(expected, budget_epochs)
