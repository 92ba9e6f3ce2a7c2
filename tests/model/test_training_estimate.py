"""model.training_estimate: the epoch the plateau stop is expected at, on synthetic held-out
loss curves (pure: no training)."""

from __future__ import annotations

import math

import pytest

from model.training_estimate import REBOUND_EPOCHS, expected_epochs
from model.training_progress import WARM_UP_SHARE, TrainingClock

MIN_IMPROVEMENT = 0.005
REBOUND_IMPROVEMENT = 0.02
PATIENCE = 2


def _curve(gains: list[float], start: float = 5.0) -> list[float]:
    """Held-out losses from epoch 1's ``start`` and each later epoch's change (a gain lowers it;
    a negative gain raises it)."""
    losses = [start]
    for gain in gains:
        losses.append(losses[-1] - gain)
    return losses


def _rule_stop(losses: list[float]) -> int | None:
    """The epoch model.training_run's plateau rule stops at, or None if it does not."""
    best, stale, rate_lowered = losses[0], 0, False
    for epoch, loss in enumerate(losses[1:], start=2):
        needed = REBOUND_IMPROVEMENT if rate_lowered else MIN_IMPROVEMENT
        stale = 0 if loss < best - needed else stale + 1
        rate_lowered = not loss < best - MIN_IMPROVEMENT
        best = min(best, loss)
        if stale >= PATIENCE:
            return epoch
    return None


def _expected(losses: list[float], max_epochs: int = 500, **kwargs: float) -> float | None:
    return expected_epochs(
        losses,
        min_improvement=MIN_IMPROVEMENT,
        patience=PATIENCE,
        max_epochs=max_epochs,
        rebound_improvement=REBOUND_IMPROVEMENT,
        **kwargs,
    )


# Gains halving each epoch until the held-out loss turns up at epoch 8 (overfitting) and stays
# there at epoch 9: the rule stops at epoch 9.
PLATEAU_AT_9 = _curve([0.3, 0.15, 0.075, 0.0375, 0.019, 0.0094, -0.01, -0.002])


def test_the_synthetic_curve_stops_at_epoch_9_by_the_rule() -> None:
    assert len(PLATEAU_AT_9) == 9 and _rule_stop(PLATEAU_AT_9) == 9


@pytest.mark.parametrize("done", range(2, 8))
def test_a_curve_that_plateaus_at_epoch_9_is_expected_to_end_near_9(done: int) -> None:
    expected = _expected(PLATEAU_AT_9[:done])
    assert expected is not None
    assert abs(expected - 9) <= 1.0, (done, expected)


def test_a_slower_decay_is_expected_to_end_later() -> None:
    # The fit, not the prior alone: gains shrinking by 0.8 an epoch take longer to go stale.
    fast = _curve([0.16 * 0.5**k for k in range(4)])
    slow = _curve([0.16 * 0.8**k for k in range(4)])
    fast_end, slow_end = _expected(fast), _expected(slow)
    assert fast_end is not None and slow_end is not None
    assert slow_end > fast_end + 2


def test_unknown_before_two_epochs_or_with_a_broken_loss() -> None:
    assert _expected([]) is None
    assert _expected([5.0]) is None
    assert _expected([5.0, math.nan]) is None
    assert _expected([5.0, math.inf, 4.0]) is None


def test_the_limits_cap_the_expected_end() -> None:
    assert _expected(PLATEAU_AT_9[:3]) == pytest.approx(9.0, abs=1.0)
    # The epoch limit, and the epochs the time budget holds.
    assert _expected(PLATEAU_AT_9[:3], max_epochs=6) == 6.0
    assert _expected(PLATEAU_AT_9[:3], budget_epochs=4.5) == 4.5
    # A stale epoch 2 at the epoch limit: the epoch in progress is still to come.
    assert _expected([5.0, 5.0], max_epochs=2) == 2.0
    assert _expected([5.0, 5.0], max_epochs=3) == 3.0


def test_without_the_plateau_stop_the_end_is_the_epoch_limit() -> None:
    assert expected_epochs([], min_improvement=0.005, patience=None, max_epochs=40) == 40.0
    assert (
        expected_epochs(
            [5.0, 4.0], min_improvement=0.005, patience=None, max_epochs=40, budget_epochs=7.5
        )
        == 7.5
    )


def test_after_a_stale_epoch_the_end_follows_the_rule() -> None:
    # A first stale epoch: about half the trainings gain once more (the lowered learning rate),
    # then `patience` stale epochs.
    assert _expected(_curve([0.2, 0.1, -0.01])) == 4 + REBOUND_EPOCHS + PATIENCE
    assert _expected(PLATEAU_AT_9[:8]) == 8 + REBOUND_EPOCHS + PATIENCE
    # After the rebound, a stale epoch: the next stale one ends it.
    assert _expected(_curve([0.2, 0.1, -0.01, 0.05, 0.0])) == 7.0


def test_a_small_rebound_does_not_break_the_stale_streak() -> None:
    # A stale epoch 4 (the rate lowered), then 0.01 under the best loss < REBOUND_IMPROVEMENT:
    # two stale epochs in a row, so the rule stops at epoch 5; 0.05 under it breaks the streak.
    small = _curve([0.2, 0.1, -0.01, 0.02])
    assert _rule_stop(small) == 5
    assert _rule_stop(_curve([0.2, 0.1, -0.01, 0.06])) is None
    # With a patience of 3 the estimate sees the streak (still stale after epoch 5) where the
    # rule without rebound_improvement saw a rebound (then `patience` more stale epochs).
    common = {"min_improvement": MIN_IMPROVEMENT, "patience": 3, "max_epochs": 500}
    with_rule = expected_epochs(small, rebound_improvement=REBOUND_IMPROVEMENT, **common)
    assert with_rule == 5 + REBOUND_EPOCHS + 3
    assert expected_epochs(small, rebound_improvement=0.0, **common) == 5 + 3


def test_the_clock_counts_the_epochs_the_budget_holds() -> None:
    clock = TrainingClock()
    clock.record_step(1.0)  # the first step includes tracing and is left out of the rate
    for _ in range(4):
        clock.record_step(0.5)
    clock.eval_seconds, clock.evals = 1.0, 1
    # An epoch of 10 steps is 10 x 0.5 s + a 1 s evaluation: 60 s more hold 10 epochs.
    assert clock.epochs_within(clock.elapsed() + 60.0, 10) == pytest.approx(10.0, abs=0.01)
    assert clock.epochs_within(clock.elapsed() - 1.0, 10) == 0.0


def test_the_eta_follows_the_latest_epoch_and_the_warm_up() -> None:
    clock = TrainingClock()
    clock.record_step(3.0)  # tracing
    for _ in range(9):
        clock.record_step(1.0)
    clock.eval_seconds, clock.evals = 2.0, 1
    clock.end_epoch()
    for _ in range(10):
        clock.record_step(0.5)
    clock.eval_seconds, clock.evals = 3.0, 2
    clock.end_epoch()
    # Epoch 2's rates (0.5 s a step, a 1 s evaluation), at the warm-up share: the first epochs
    # run slower than the later ones.
    assert clock.rates() == pytest.approx((0.5 * WARM_UP_SHARE, 1.0 * WARM_UP_SHARE))
    assert clock.eta(2, 10, 0, budget=1e9) == pytest.approx(2 * (10 * 0.5 + 1.0) * WARM_UP_SHARE)
    for _ in range(10):
        clock.record_step(0.4)
    clock.eval_seconds, clock.evals = 3.5, 3
    clock.end_epoch()
    assert clock.rates() == pytest.approx((0.4, 0.5))  # epoch 3 on: as timed
    # The training figures' windows per second still count every step after the first.
    assert clock.per_step() == pytest.approx((9 * 1.0 + 10 * 0.5 + 10 * 0.4) / 29)
