"""Replay the plateau stop over recorded held-out loss curves (issue 23, 2026-12-07).

Each curve is one unseeded training's per-epoch held-out loss with the product's defaults, as
``bench/RESULTS.md`` records them (the ETA runs of 2026-12-07, whole Grimm's of 2026-12-01 and
the chat story's of 2026-12-07, trained with ``patience`` 4 so that later stops can be replayed).
A rule that only stops earlier than the recorded run and lowers the learning rate at the same
epochs can be replayed exactly: the curve up to its stop is the one it would have trained. For
each ``rebound_improvement`` it prints the epoch each curve stops at, the best held-out loss
up to there and the change against ``rebound_improvement`` 0 (the rule before 2026-12-07).

Usage: ``.venv/bin/python bench/replay_plateau_rule.py``
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config import TrainingConfig
from model.early_stopping import did_not_help

CURVES = """\
eta-before grimm-30 5.535 5.303 5.101 5.002 4.887 4.864 4.799 4.795 4.768 4.787 4.762 4.773 4.764
eta-before vernon-30 5.173 4.818 4.715 4.582 4.617 4.592
eta-before jacobs 5.598 5.403 5.272 5.173 5.105 5.065 5.053 5.054 5.057
eta-before grimm-100 5.115 4.670 4.574 4.533 4.538 4.446 4.476 4.468
eta-before vernon-jones 5.109 4.838 4.722 4.681 4.664 4.685 4.537 4.543 4.546
eta-after grimm-30 5.447 5.257 5.025 4.911 4.835 4.770 4.760 4.764 4.754 4.776 4.773
eta-after vernon-30 5.185 4.847 4.751 4.633 4.594 4.671 4.615
eta-after jacobs 5.548 5.353 5.232 5.129 5.079 5.052 5.058 5.044 5.077 5.071
eta-after grimm-100 5.073 4.692 4.541 4.534 4.540 4.408 4.458 4.412
eta-after vernon-jones 5.115 4.793 4.739 4.689 4.696 4.540 4.531 4.543 4.544
eta-final jacobs 5.580 5.351 5.169 5.063 5.025 5.005 5.031 5.012
eta-final grimm-100 5.066 4.692 4.572 4.536 4.554 4.448 4.470 4.456
eta-final grimm-30 5.453 5.260 5.064 4.963 4.850 4.820 4.792 4.799 4.792
eta-final vernon-30 5.161 4.869 4.733 4.656 4.584 4.590 4.600
eta-last jacobs 5.619 5.363 5.196 5.120 5.037 5.019 5.013 5.047 5.036
eta-last grimm-30 5.461 5.303 5.160 4.967 4.870 4.816 4.792 4.784 4.809 4.831
2026-12-01 grimm-tied 4.6639 4.5427 4.4933 4.4446 4.4366 4.4211 4.3896 4.4 4.2509 4.2361 4.2159 \
4.2066 4.1849 4.174 4.1802 4.1569 4.1603 4.1635
2026-12-01 grimm-untied 4.7397 4.5216 4.4172 4.3605 4.3064 4.2939 4.2706 4.2678 4.2331 4.2182 \
4.2045 4.2080 4.2066
patience-4 chat 5.3958 5.1443 5.0788 5.0334 5.0365 4.9391 4.9448 4.9317 4.9432 4.9351 4.9331 4.9318
"""
REBOUNDS = (0.0, 0.01, 0.02, 0.03, 0.05)


def curves() -> list[tuple[str, list[float]]]:
    rows = []
    for line in CURVES.replace("\\\n", "").splitlines():
        run, story, *losses = line.split()
        rows.append((f"{run} {story}", [float(x) for x in losses]))
    return rows


def replay(losses: Sequence[float], training: TrainingConfig) -> tuple[int | None, float]:
    """The epoch the rule stops at (None: not within the curve) and the best loss up to it."""
    assert training.patience is not None
    stale, rate_lowered = 0, False
    for i, loss in enumerate(losses):
        best = min(losses[:i]) if i else None
        stale = stale + 1 if did_not_help(loss, best, rate_lowered, training) else 0
        rate_lowered = did_not_help(loss, best, False, training)
        if stale >= training.patience:
            return i + 1, min(losses[: i + 1])
    return None, min(losses)


def main() -> None:
    print("# replay_plateau_rule: stop epoch (best held-out loss, change) per rebound_improvement")
    rows = curves()
    before = {
        name: replay(losses, replace(TrainingConfig(), rebound_improvement=0.0))
        for name, losses in rows
    }
    print("| curve | " + " | ".join(f"rebound {r:g}" for r in REBOUNDS) + " |")
    print("|---|" + "---|" * len(REBOUNDS))
    totals = {r: [0, 0.0, 0.0] for r in REBOUNDS}  # epochs, summed and worst loss change
    for name, losses in rows:
        cells = []
        for rebound in REBOUNDS:
            epoch, best = replay(losses, replace(TrainingConfig(), rebound_improvement=rebound))
            change = best - before[name][1]
            cells.append(f"{epoch} ({best:.3f}, {change:+.3f})")
            total = totals[rebound]
            total[0] += epoch or len(losses)
            total[1] += change
            total[2] = max(total[2], change)
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(
        "| all: epochs (mean, worst loss change) | "
        + " | ".join(f"{e} ({s / len(rows):+.4f}, {w:+.3f})" for e, s, w in totals.values())
        + " |"
    )


if __name__ == "__main__":
    main()
