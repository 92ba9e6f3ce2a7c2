"""Latency of a 32-symbol greedy continuation: numpy path versus the Keras model per step.

Trains the default model (512 units) on the article's story once, then times ``generate``
(numpy, fresh network each call, so the per-word cache is rebuilt every time) and a loop that
calls the Keras model once per symbol (``model(x)`` eagerly and a compiled
``predict_on_batch``), all in one run, and checks they give the same symbols.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[1] / "data"


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 95))


def main() -> None:
    import keras

    from model import TrainingConfig, generate, tokenize
    from model.generation import NumpyLSTM
    from model.network import assign_weights, build_network
    from model.training import train_model

    tokens = tokenize((DATA / "belling-the-cat.txt").read_text(encoding="utf-8"))
    model = train_model(tokens, None, TrainingConfig(seed=1))
    prompt = ["had", "a", "general"]
    network = build_network(model.config)
    assign_weights(network, model.config, model.weights)

    def keras_loop(call: Callable[[np.ndarray], object]) -> list[str]:
        ids = model.vocabulary.encode(prompt)
        for _ in range(32):
            logits = np.asarray(call(np.asarray([ids[-3:]], dtype=np.int32)))
            ids.append(int(np.argmax(logits[0])))
        return model.vocabulary.decode(ids[3:])

    numpy_out = generate(model, prompt)
    assert keras_loop(network.predict_on_batch) == numpy_out, "numpy and Keras disagree"
    fresh = timed(lambda: generate(model, prompt, network=NumpyLSTM(model)), 50)
    warm_net = NumpyLSTM(model)
    warm = timed(lambda: generate(model, prompt, network=warm_net), 50)
    compiled = timed(lambda: keras_loop(network.predict_on_batch), 10)
    eager = timed(lambda: keras_loop(lambda x: network(x, training=False)), 5)
    print(f"32 symbols, 512 units, vocabulary {len(model.vocabulary)}; same symbols: yes")
    print(f"numpy, fresh network    : p50 {fresh[0]:7.2f} ms  p95 {fresh[1]:7.2f} ms")
    print(f"numpy, cached first step: p50 {warm[0]:7.2f} ms  p95 {warm[1]:7.2f} ms")
    print(f"keras predict_on_batch  : p50 {compiled[0]:7.2f} ms  p95 {compiled[1]:7.2f} ms")
    print(f"keras model(x) eager    : p50 {eager[0]:7.2f} ms  p95 {eager[1]:7.2f} ms")
    ratio = compiled[0] / fresh[0]
    print(f"ratio keras compiled / numpy fresh: {ratio:.0f}x (target numpy p50 <= 5 ms)")
    _ = keras


if __name__ == "__main__":
    main()
