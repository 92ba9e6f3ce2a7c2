"""How long a chat history trains, and to what held-out perplexity (issue 23, items 4 and 5).

The story is ``bench/chat_rows.py``'s: the first messages of ``data/chat/chitchat-12k.txt`` up to
``CHAT_SYMBOLS`` symbols (4,108 messages, 47,986 symbols), trained as ``/train source:history``
trains it (the bot's model and training config and vocabulary cap, ``train_model`` in this
process, unseeded). Each round prints the wall seconds of ``train_model`` (data, networks,
tracing and training), the epochs and the stop, the best epoch, the first step (tracing), the
median seconds of epochs 2 and later, the held-out perplexity of the best epoch and its ratio to a
Kneser-Ney 3-gram chain built on the same training windows (issue 23: <= 0.85; item 5: <= 90 s on
the 2-core machine). The machine may be shared: the load average is printed before and after
each round.

Usage: ``.venv/bin/python bench/bench_chat_training.py [--rounds 2]``
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_books import markov_baselines
from bench.chat_quality import history_slice, messages_of
from bench.chat_rows import CHAT, CHAT_SYMBOLS, product_training
from bot.core.history import story_text
from model import tokenize


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} / {five:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from model.training import train_model

    messages, _ = history_slice(messages_of(CHAT.read_text(encoding="utf-8")), CHAT_SYMBOLS)
    tokens = tokenize(story_text(messages))
    model_config, training, cap = product_training(quick=False)
    print(f"# bench_chat_training: {len(messages):,} messages, {len(tokens):,} symbols")
    print(
        "| round | load 1/5 min before | wall s | epochs (stop) | best | first step s"
        " | s / epoch (2+) | LSTM ppl | KN-3 ppl | LSTM / KN-3 | load after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    kn3: float | None = None
    for round_no in range(1, args.rounds + 1):
        before = load()
        t0 = time.perf_counter()
        model = train_model(tokens, model_config, training, vocabulary_max_size=cap)
        wall = time.perf_counter() - t0
        f = model.figures
        assert f.val_perplexity is not None
        if kn3 is None:
            kn3 = markov_baselines(tokens, cap - 1, model.config.n_input, f.to_dict())[
                1
            ].score.perplexity
        ends = [entry["seconds"] for entry in f.history]
        per_epoch = statistics.median(b - a for a, b in itertools.pairwise(ends))
        print(
            f"| {round_no} | {before} | {wall:.1f} | {f.epochs} ({f.stopped}) | {f.best_epoch}"
            f" | {f.first_step_seconds or 0:.1f} | {per_epoch:.1f} | {f.val_perplexity:.1f}"
            f" | {kn3:.1f} | {f.val_perplexity / kn3:.3f} | {load()} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
