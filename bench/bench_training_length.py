"""Training length per story size (issue 16): when does a training end, and what did it reach?

Cuts of one book (default Grimm; the first 2, 10, 30 and 100 KB, then the whole book with
``--full``) are trained with the product's defaults (``TrainingConfig()``, unseeded like the
bot's unless ``--seed`` is given; the n_input that ``model.config.default_n_input`` picks for the
cut's size, and the default vocabulary cap of the bot). For each cut the bench prints the
symbols, n_input, the held-out split (stories of ``LONG_STORY_SYMBOLS`` symbols or more), the
epochs and what stopped the training (``learned``: every learnable window right; ``plateau``:
more epochs stopped helping; ``max_seconds``: the budget), the wall time of ``train_model``, the
epoch of the best held-out loss, and the held-out perplexity next to an order-3 Kneser-Ney Markov
chain's built on the same training windows (``bench/markov.py``) with their ratio.

The budget (``--max-seconds``, default the product's 600 s) is meant as a cap: the target is that
training ends by itself, so a 30 KB story takes about a minute. The machine may be shared: the load
average is printed at the start and at the end.

Usage: ``.venv/bin/python bench/bench_training_length.py [--book grimm] [--full]``
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.markov import KneserNeyMarkov  # noqa: E402
from model import TrainingConfig, Vocabulary, tokenize  # noqa: E402
from model.config import default_n_input  # noqa: E402
from model.windows import gather, split_indices, window_count  # noqa: E402

BOOKS = {
    "grimm": "grimms-fairy-tales-taylor-edwardes.txt",
    "vernon-jones": "aesops-fables-vernon-jones.txt",
    "jacobs": "fables-of-aesop-jacobs.txt",
}
SIZES_KB = (2, 10, 30, 100)
VOCABULARY_CAP = 10_000  # the bot's default limits.vocabulary (+ <unk>)


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"


def markov3(tokens: list[str], n_input: int) -> float:
    """Held-out perplexity of Markov-3 on the split and vocabulary training used."""
    vocabulary = Vocabulary.build(tokens, max_size=VOCABULARY_CAP + 1)
    ids = np.asarray(vocabulary.encode(tokens), dtype=np.int32)
    train_idx, val_idx = split_indices(
        window_count(len(ids), n_input), TrainingConfig().validation_fraction, n_input
    )
    x_train, y_train = gather(ids, train_idx, n_input)
    x_val, y_val = gather(ids, val_idx, n_input)
    chain = KneserNeyMarkov(3, len(vocabulary)).fit(x_train.tolist(), y_train.tolist())
    return chain.score(x_val.tolist(), y_val.tolist()).perplexity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--book", default="grimm", choices=sorted(BOOKS))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES_KB)), help="KB, comma-separated")
    parser.add_argument("--full", action="store_true", help="also the whole book")
    parser.add_argument("--max-seconds", type=float, default=TrainingConfig().max_seconds)
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="default: none, as the bot trains (a seeded run is not XLA-compiled, see"
        " model.training_run._compile)",
    )
    args = parser.parse_args()

    from model.training import train_model

    text = (ROOT / "data" / "corpora" / BOOKS[args.book]).read_text(encoding="utf-8")
    cuts = [(f"{kb} KB", text[: kb * 1024]) for kb in map(int, args.sizes.split(","))]
    if args.full:
        cuts.append((f"whole ({len(text.encode()) // 1024} KB)", text))
    print(f"# bench_training_length {datetime.date.today().isoformat()}, {args.book}")
    print(f"start: {load_line()}")
    defaults = TrainingConfig()
    print(
        f"defaults: patience {defaults.patience} epochs, min improvement"
        f" {defaults.min_improvement} nats, budget {args.max_seconds:.0f} s,"
        f" all positions {defaults.all_positions}, batch {defaults.batch_size}"
    )
    rows = []
    for label, cut in cuts:
        tokens = tokenize(cut)
        n_input = default_n_input(len(tokens))
        t0 = time.perf_counter()
        model = train_model(
            tokens,
            {"n_input": n_input},
            TrainingConfig(seed=args.seed, max_seconds=args.max_seconds),
            vocabulary_max_size=VOCABULARY_CAP + 1,
        )
        wall = time.perf_counter() - t0
        f = model.figures
        split = f.val_perplexity is not None
        m3 = markov3(tokens, n_input) if split else math.nan
        ppl = f.val_perplexity if split else math.nan
        rows.append(
            [
                label,
                f"{len(tokens):,}",
                str(n_input),
                "yes" if split else "no",
                str(f.epochs),
                f.stopped,
                f"{wall:.1f}",
                str(f.best_epoch) if f.best_epoch else "-",
                f"{f.learnable_accuracy:.3f}",
                f"{ppl:.1f}" if split else "-",
                f"{m3:.1f}" if split else "-",
                f"{ppl / m3:.2f}" if split else "-",
            ]
        )
        print(
            f"  {label}: {f.epochs} epochs, {f.stopped}, {wall:.1f} s ({load_line()})", flush=True
        )
    header = [
        "cut",
        "symbols",
        "n_input",
        "held-out split",
        "epochs",
        "stopped",
        "wall s",
        "best epoch",
        "learnable acc",
        "LSTM ppl",
        "Markov-3 ppl",
        "LSTM / M3",
    ]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nend: {load_line()}")


if __name__ == "__main__":
    main()
