"""Training speed on the article's story: the article's method versus fabulist's, one run.

Prints import time, the first step (tracing) of each method apart, seconds of training to
90% accuracy for each and the ratio, and seconds for ours to every learnable window.
``--article-cap`` bounds the article's run (default 300 s); a capped run is reported as such.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = Path(__file__).resolve().parents[1] / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--article-cap", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    t0 = time.perf_counter()
    import keras  # noqa: F401 - timed on purpose

    import_seconds = time.perf_counter() - t0
    from article_method import train_article_method

    from model import TrainingConfig, Vocabulary, tokenize
    from model.training import train_model

    tokens = tokenize((DATA / "belling-the-cat.txt").read_text(encoding="utf-8"))
    vocabulary = Vocabulary.build(tokens)
    print(f"story: {len(tokens)} symbols, {len(vocabulary)} unique")
    print(f"import keras (TensorFlow backend): {import_seconds:.2f} s")

    t0 = time.perf_counter()
    ours = train_model(tokens, None, TrainingConfig(seed=args.seed))
    wall = time.perf_counter() - t0
    f = ours.figures
    first = f.first_step_seconds or 0.0
    to_90 = next(h["seconds"] for h in f.history if h["accuracy"] >= 0.9) - first
    learned = f.history[-1]["seconds"] - first
    print(
        f"ours   : Embedding(64)+LSTM(512)+Dense, Adam 1e-2, batch {f.training_windows} (full); "
        f"first step (tracing) {first:.2f} s; to 90% {to_90:.2f} s of training; "
        f"all {f.learnable_windows} learnable windows ({f.stopped}) after {f.epochs} epochs, "
        f"{learned:.2f} s of training; call wall time {wall:.2f} s"
    )

    run = train_article_method(
        vocabulary.encode(tokens), len(vocabulary), max_seconds=args.article_cap, seed=args.seed
    )
    blocks = ", ".join(f"{a:.2f}" for a in run.block_accuracies[-5:])
    if run.seconds_to_90 is None:
        print(
            f"article: scalar-id LSTM(512), RMSProp 1e-3, batch 1, walk-by-4; first step "
            f"{run.first_step_seconds:.2f} s; CAPPED at {args.article_cap:.0f} s: {run.steps} "
            f"steps ({run.seconds / max(1, run.steps) * 1000:.1f} ms/step), never a 1000-step "
            f"block >= 90% (last blocks {blocks})"
        )
        print(f"ratio  : article > {args.article_cap / to_90:.0f}x slower to 90% (lower bound)")
    else:
        print(
            f"article: scalar-id LSTM(512), RMSProp 1e-3, batch 1, walk-by-4; first step "
            f"{run.first_step_seconds:.2f} s; 90% block after {run.steps_to_90} steps, "
            f"{run.seconds_to_90:.1f} s of training ({run.seconds / run.steps * 1000:.1f} ms/step)"
        )
        print(f"ratio  : ours is {run.seconds_to_90 / to_90:.0f}x faster to 90% (target >= 40x)")
    print(f"target : all learnable within 3 s of training -> {'met' if learned <= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
