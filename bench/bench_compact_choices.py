"""Compact storage against float32: what the model cache's check costs and what it guarantees.

The model cache stores a model compact (model.forward: int8 recurrent matrices, multiplied as
int8 by model/quantized.py's kernel since issue 27, float16 for the rest) only when that
storage makes float32's first choices on the story's own windows, else float16, else float32.
This trains the article's network (512 units, one and two layers, seeds 1-3) and a Grimm model
(vocabulary capped at 5,000, one epoch of at most ``--grimm-seconds``), and prints per model:
the storage the check chose, the check's time, and, for greedy 32-symbol continuations with the
default options, how many prompts continue differently from float32: the story's own windows
(guaranteed the same while the continuation stays in the story and the repeat guard sets no
choice aside) and prompts of three random vocabulary words (not guaranteed: a near-tie off the
story may go the other way).
Run: .venv/bin/python bench/bench_compact_choices.py [--prompts N] [--grimm-seconds S]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import GenerationOptions, TrainedModel, TrainingConfig, generate, tokenize
from model.forward import NumpyLSTM
from model.training import train_model

DATA = Path(__file__).resolve().parents[1] / "data"


def differing(model: TrainedModel, prompts: list[list[str]]) -> tuple[int, float, str]:
    """(prompts continued differently, the check's seconds, the storage chosen)."""
    started = time.perf_counter()
    compact = NumpyLSTM(model, compact=True)
    seconds = time.perf_counter() - started
    full = NumpyLSTM(model)
    options = GenerationOptions()
    count = sum(
        generate(model, p, options, network=compact) != generate(model, p, options, network=full)
        for p in prompts
    )
    return count, seconds, compact.precision


def report(name: str, model: TrainedModel, count: int, rng: np.random.Generator) -> None:
    story = model.weights["story"].tolist()
    n = model.config.n_input
    decode = model.vocabulary.decode
    starts = rng.integers(0, len(story) - n, size=count)
    on_story = [decode(story[s : s + n]) for s in starts]
    words = [s for s in model.vocabulary.symbols if s != "<unk>"]
    random_prompts = [[str(w) for w in rng.choice(words, size=3)] for _ in range(count)]
    story_diff, seconds, precision = differing(model, on_story)
    random_diff, _, _ = differing(model, random_prompts)
    print(
        f"{name}: stored {precision}, check {seconds:.2f} s; differ from float32: "
        f"story windows {story_diff}/{count}, random prompts {random_diff}/{count}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--grimm-seconds", type=float, default=60.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    article = tokenize((DATA / "belling-the-cat.txt").read_text(encoding="utf-8"))
    for layers in (1, 2):
        for seed in (1, 2, 3):
            model = train_model(article, {"layers": layers}, TrainingConfig(seed=seed))
            report(f"article, {layers} layer(s), seed {seed}", model, args.prompts, rng)
    grimm = tokenize(
        (DATA / "corpora" / "grimms-fairy-tales-taylor-edwardes.txt").read_text(encoding="utf-8")
    )
    training = TrainingConfig(seed=1, max_epochs=1, max_seconds=args.grimm_seconds)
    model = train_model(grimm, None, training, vocabulary_max_size=5000)
    report("Grimm (tied, 1 epoch)", model, args.prompts, rng)


if __name__ == "__main__":
    main()
