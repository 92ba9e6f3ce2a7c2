"""Latency of a 32-symbol continuation: numpy now, numpy before issue 16, and Keras.

First times one recurrent product of a 512-unit layer with 1, 2 and 9 rows: the int8 kernel of
compact storage (model/quantized.py) against float32 BLAS on the widened matrix. Then it
trains the default model (512 units) on the article's story, and on Grimm's fairy tales
(vocabulary capped at 5,000 + ``<unk>``, one epoch of at most ``--grimm-seconds``: latency does
not depend on how well it learned). Then, in interleaved rounds (each round times every variant
once, so the machine's load hits all alike), a 32-symbol greedy continuation of each prompt with:

- ``before``: the forward pass and decoding of main before issue 16 (bench/_generation_before.py:
  one window at a time, first step cached per word, full-vocabulary logits, default BLAS threads);
- ``pipelined``: model.forward's pipelined pass and candidate-only logits, default BLAS threads;
- ``now``: the same with BLAS limited to one thread during the call (``model.generate``);
- ``widened``: ``now`` on compact storage (the model cache's: int8 recurrent matrices, float16
  for the rest) with its float32 copies made, the int8 matrices widened to float32 (as without
  numba);
- ``compact``: the same storage with the int8 recurrent matrices multiplied as int8
  (model/quantized.py, issue 27), what the model cache runs;
- ``keras``: the Keras model once per symbol (``predict_on_batch``), a few rounds only.

It checks that ``now``, ``widened`` and ``compact`` give the same symbols as ``before`` for every
prompt (and names the variants that do not: ``before`` has no ``whole_messages`` cut, so on a
story with paragraphs a reply of the others can be ``before``'s cut at a sentence end), that
``compact`` gives the same symbols as float32's ``now``, and that the network's own argmax
gives the same symbols as Keras. Prints p50 / p95 per variant, the
ratios to ``before`` and to Keras, the targets (issue 16: ``now`` p50 <= 2 ms article, <= 5 ms
Grimm; issue 27: ``compact`` p50 <= 1/12 of Keras's article, <= 1/15 Grimm), and the load average.
Run: .venv/bin/python bench/bench_generation_latency.py [--rounds N] [--grimm-seconds S]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._generation_before import NumpyLSTMBefore, generate_before
from model import GenerationOptions, TrainedModel, TrainingConfig, generate, tokenize
from model.forward import NumpyLSTM
from model.generation import _decode

DATA = Path(__file__).resolve().parents[1] / "data"
GRIMM = DATA / "corpora" / "grimms-fairy-tales-taylor-edwardes.txt"
TARGETS = {"article": 2.0, "grimm": 5.0}
# Issue 27: the compact path's p50 at most 1/12 (article) and 1/15 (Grimm) of Keras's.
KERAS_TARGETS = {"article": 12.0, "grimm": 15.0}
PROMPTS = {
    "article": [["had", "a", "general"], ["mouse", "mouse", "mouse"], ["the", "cat"]],
    "grimm": [["the", "king", "said"], ["once", "upon", "a"], ["wolf", "wolf", "wolf"]],
}
ARGMAX = GenerationOptions(follow_story=False, no_repeat_ngram=None)


def keras_symbols(model: TrainedModel, prompt: list[str]) -> Callable[[], list[str]]:
    from model.network import assign_weights, build_network

    network = build_network(model.config)
    assign_weights(network, model.config, model.weights)
    # The context the numpy pass sees: a prompt shorter than n_input completed on the left
    # with the story's predecessors (a long story's model reads 10 symbols).
    padded = NumpyLSTM(model).padded_context

    def run() -> list[str]:
        ids = model.vocabulary.encode(prompt)
        for _ in range(32):
            context = np.asarray([padded(ids)], dtype=np.int32)
            logits = network.predict_on_batch(context)
            ids.append(int(np.argmax(logits[0])))
        return model.vocabulary.decode(ids[len(prompt) :])

    return run


def variants(model: TrainedModel, prompt: list[str]) -> dict[str, Callable[[], list[str]]]:
    before = NumpyLSTMBefore(model)
    now = NumpyLSTM(model)
    widened = NumpyLSTM(model, compact=True, int8_products=False)
    widened.weights()
    compact = NumpyLSTM(model, compact=True)
    compact.weights()
    print(f"compact storage: {compact.precision}")
    ids = model.vocabulary.encode(prompt)
    return {
        "before": lambda: generate_before(model, prompt, network=before),
        "pipelined": lambda: _decode(model, now, ids, GenerationOptions()),
        "now": lambda: generate(model, prompt, network=now),
        "widened": lambda: generate(model, prompt, network=widened),
        "compact": lambda: generate(model, prompt, network=compact),
    }


def measure(name: str, model: TrainedModel, rounds: int) -> None:
    samples: dict[str, list[float]] = {}
    differing: list[str] = []
    compact_same = True
    for prompt in PROMPTS[name]:
        runs = variants(model, prompt)
        expected = runs["before"]()
        compact_same = compact_same and runs["compact"]() == runs["now"]()
        for label, run in runs.items():
            got = run()
            if got != expected:
                at = next(k for k, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b)
                differing.append(
                    f"{label} on {' '.join(prompt)!r} from symbol {at}: "
                    f"{' '.join(got[at : at + 4])!r} for {' '.join(expected[at : at + 4])!r}"
                )
        for _ in range(rounds):
            for label, run in runs.items():
                t0 = time.perf_counter()
                run()
                samples.setdefault(label, []).append((time.perf_counter() - t0) * 1000)
    keras_run = keras_symbols(model, PROMPTS[name][0])
    agree = keras_run() == generate(model, PROMPTS[name][0], ARGMAX)
    for _ in range(3):
        t0 = time.perf_counter()
        keras_run()
        samples.setdefault("keras", []).append((time.perf_counter() - t0) * 1000)
    base = float(np.percentile(samples["before"], 50))
    keras = float(np.percentile(samples["keras"], 50))
    print(
        f"\n{name}: vocabulary {len(model.vocabulary)}, {model.config.units} units, "
        f"{len(PROMPTS[name])} prompts x {rounds} rounds; same symbols as before: "
        f"{'NO' if differing else 'yes'}; network argmax same as Keras: "
        f"{'yes' if agree else 'NO'}; compact same as float32 (now): "
        f"{'yes' if compact_same else 'NO'}"
    )
    for difference in differing:
        print(f"  different: {difference}")
    print(f"{'variant':>10}{'p50 ms':>9}{'p95 ms':>9}{'x before':>10}{'x keras':>9}{'target':>16}")
    for label, values in samples.items():
        p50, p95 = np.percentile(values, 50), np.percentile(values, 95)
        target = {
            "now": f"<= {TARGETS[name]:.0f} ms",
            "compact": f">= {KERAS_TARGETS[name]:.0f}x keras",
        }.get(label, "")
        print(
            f"{label:>10}{p50:>9.2f}{p95:>9.2f}{base / p50:>9.1f}x{keras / p50:>8.1f}x{target:>16}"
        )


def products(repeats: int = 300) -> None:
    """One recurrent product of a 512-unit layer (512 x 2048), p50 over ``repeats``: the int8
    kernel against the float32 product of the widened matrix (OpenBLAS, one thread), with the
    rows the article's (2) and Grimm's (9) models advance per symbol."""
    from model.forward import single_threaded_blas
    from model.quantized import int8_product

    rng = np.random.default_rng(0)
    matrix = rng.integers(-127, 128, (2048, 512)).astype(np.int8)
    scale = np.full(2048, 1e-3, dtype=np.float32)
    widened = np.ascontiguousarray(matrix.T.astype(np.float32) * scale)

    def p50_us(run: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        return float(np.percentile(times, 50)) * 1e6

    with single_threaded_blas():
        for rows in (1, 2, 9):
            h = np.tanh(rng.standard_normal((rows, 512))).astype(np.float32)
            out = np.zeros((rows, 2048), dtype=np.float32)
            int8 = p50_us(lambda h=h, out=out: int8_product(h, matrix, scale, out))
            blas = p50_us(lambda h=h: h @ widened)
            print(f"product, {rows} row(s): int8 {int8:.0f} us, float32 {blas:.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--grimm-seconds", type=float, default=45.0)
    parser.add_argument("--article-only", action="store_true")
    args = parser.parse_args()
    from model.training import train_model

    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    products()
    tokens = tokenize((DATA / "belling-the-cat.txt").read_text(encoding="utf-8"))
    measure("article", train_model(tokens, None, TrainingConfig(seed=1)), args.rounds)
    if not args.article_only:
        grimm = train_model(
            tokenize(GRIMM.read_text(encoding="utf-8")),
            None,
            TrainingConfig(seed=1, max_epochs=1, max_seconds=args.grimm_seconds),
            vocabulary_max_size=5001,
        )
        measure("grimm", grimm, args.rounds)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
