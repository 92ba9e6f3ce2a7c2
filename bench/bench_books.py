"""Book-length stories (issue 6): speed, memory, ETA and quality per book, in one run.

For each book of ``data/corpora`` the default model (Embedding 64 -> LSTM 512 -> Dense V; from
20,000 symbols on Embedding 256 and the output layer tied to it; the product's TrainingConfig
apart from the per-book epoch / seconds bounds below) is trained in a fresh *spawned* process
(like a training worker) and the bench prints one row per book:

* symbols, vocabulary (capped at ``--vocab-cap`` + ``<unk>``) and the share of the text it covers;
* seconds per epoch (median of the full epochs after the first, including the held-out
  evaluation; epoch 1 also pays tracing / XLA compilation and is shown apart), training windows
  per second (train steps only, the first step excluded), achieved GFLOP/s and its share of this
  machine's float32 matmul peak (numpy, measured in the same run, before and after training);
* peak resident memory of the training process (``ru_maxrss`` = ``VmHWM``), TensorFlow included;
* held-out accuracy and perplexity of the LSTM (its best epoch by held-out loss, as committed)
  next to word Markov chains of order 2 and 3 (``bench/markov.py``, interpolated Kneser-Ney)
  built here on exactly the LSTM's training windows and scored on its held-out windows, over the
  same vocabulary.

FLOPs are counted as matmul work only (gate nonlinearities, softmax and the optimizer are < 1 %)::

    forward per window  = steps * 2 * 4U * (E + U)  +  2 * U * V
    training per window = 3 * forward        (backward ~ 2x forward: input and weight gradients)

with ``2 * (U * E + E * V)`` for the output layer instead when it is tied to the embedding
(``projection @ embedding.T``, from ``TrainingConfig.tie_min_symbols`` symbols on).

where steps = n_input when each window is its own sequence, and 1 with the product's default
for books (``TrainingConfig.all_positions``: one sequence of n_input symbols trains n_input
targets, one LSTM step and one softmax each).

Also printed: the ETA reported after epoch 1 (elapsed + eta) against the actual training time,
and what TensorFlow's intra/inter-op thread settings do to throughput (short runs on the largest
book in interleaved rounds, so that load drift hits every setting alike; plus one with a seed,
which turns on TensorFlow's op determinism, and the baseline of the XLA-compiled training of long
stories: the same run with ``TrainingConfig(xla=False)``, as trained before 2026-12-01).

Usage: ``.venv/bin/python bench/bench_books.py [--quick] [--books grimm,jacobs] [--units 512]``;
``--help`` lists the rest. The machine may be shared: the load average is printed at the start and
at the end, and the CPU share each training process got (CPU seconds / wall / cores).
"""

from __future__ import annotations

import argparse
import datetime
import math
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.markov import KneserNeyMarkov, Score  # noqa: E402
from model import TrainingConfig, Vocabulary, tokenize  # noqa: E402
from model.windows import gather, split_indices, window_count  # noqa: E402

CORPORA = ROOT / "data" / "corpora"
GIB = 1024**3


@dataclass(frozen=True)
class Book:
    key: str
    filename: str
    max_epochs: int  # sized so that epochs, not seconds, normally end the run (a real ETA check)
    max_seconds: float  # the per-book budget: a backstop that keeps the bench near 15 minutes


BOOKS = (
    Book("jacobs", "fables-of-aesop-jacobs.txt", 6, 90.0),
    Book("vernon-jones", "aesops-fables-vernon-jones.txt", 5, 140.0),
    Book("grimm", "grimms-fairy-tales-taylor-edwardes.txt", 5, 270.0),
)
QUICK_EPOCHS, QUICK_SECONDS, QUICK_THREAD_SECONDS = 2, 12.0, 6.0
PEAK_SHARE_TARGET = 0.60  # issue 16: the largest book's training at this share of the peak
THREAD_SETTINGS: tuple[tuple[str, int | None, int | None, int | None, bool], ...] = (
    # label, intra-op threads, inter-op threads, seed, XLA (TrainingConfig.xla)
    ("TF default", None, None, None, True),
    ("intra 1 / inter 1", 1, 1, None, True),
    ("intra 2 / inter 2", 2, 2, None, True),
    # xla stays on here: the seed itself keeps Keras from compiling (model.backend.compiles_now)
    ("default + seed (op determinism, no XLA)", None, None, 1, True),
    ("default, no XLA (before 2026-12-01)", None, None, None, False),
)


@dataclass(frozen=True)
class TrainJob:
    path: str
    units: int
    vocab_cap: int | None
    max_epochs: int
    max_seconds: float
    seed: int | None = None
    n_input: int | None = None  # None: the product's choice by story size
    learning_rate: float | None = None
    batch_size: int | None = None
    intra_op: int | None = None
    inter_op: int | None = None
    xla: bool = True


# --- measured in the child (a fresh spawned process, like a training worker) -------------------


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run_training(job: TrainJob) -> dict[str, Any]:
    """Train one book in this (fresh) process; return figures and the process' peak memory."""
    rss_start = _status_kib("VmRSS")
    t0 = time.perf_counter()
    import keras

    from model import backend
    from model.training import TrainingProgress, train_model

    backend.set_threads(job.intra_op, job.inter_op)
    import_seconds = time.perf_counter() - t0
    rss_imported = _status_kib("VmRSS")
    tokens = tokenize(Path(job.path).read_text(encoding="utf-8"))
    epoch_ends: list[dict[str, float]] = []

    def on_progress(p: TrainingProgress) -> None:
        if p.step == p.steps_per_epoch and p.eta_seconds is not None:
            epoch_ends.append(
                {"epoch": p.epoch, "elapsed": p.elapsed_seconds, "eta": p.eta_seconds}
            )

    overrides: dict[str, Any] = {"learning_rate": job.learning_rate} if job.learning_rate else {}
    if job.batch_size:
        overrides["batch_size"] = job.batch_size
    training = TrainingConfig(
        max_epochs=job.max_epochs,
        max_seconds=job.max_seconds,
        seed=job.seed,
        xla=job.xla,
        **overrides,
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    model = train_model(
        tokens,
        {"units": job.units, "n_input": job.n_input},
        training,
        on_progress=on_progress,
        vocabulary_max_size=None if job.vocab_cap is None else job.vocab_cap + 1,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
    return {
        "cpu_seconds": cpu,
        "figures": model.figures.to_dict(),
        "config": model.config.to_dict(),
        "epoch_ends": epoch_ends,
        "import_seconds": import_seconds,
        "train_call_seconds": wall,
        "rss_start_kib": rss_start,
        "rss_imported_kib": rss_imported,
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "vmhwm_kib": _status_kib("VmHWM"),
        "backend": keras.backend.backend(),
    }


def train_in_fresh_process(job: TrainJob) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(run_training, job).result()


# --- measured in this process --------------------------------------------------------------------


def matmul_gflops(m: int, k: int, n: int, repeats: int = 5) -> float:
    """Median float32 ``[m, k] @ [k, n]`` rate of numpy (its BLAS, all its threads)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    a @ b  # warm-up: thread pool start, page faults
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        samples.append(time.perf_counter() - t0)
    return 2.0 * m * k * n / statistics.median(samples) / 1e9


def numpy_peak() -> tuple[float, dict[int, float]]:
    per_size = {
        n: matmul_gflops(n, n, n, repeats=3 if n >= 4096 else 5) for n in (1024, 2048, 4096)
    }
    return max(per_size.values()), per_size


def flops_per_training_window(
    n_input: int, units: int, embedding_dim: int, vocab: int, symbols: int
) -> float:
    defaults = TrainingConfig()
    steps = 1 if defaults.all_positions else n_input
    tied = defaults.tie_min_symbols is not None and symbols >= defaults.tie_min_symbols
    output = 2 * (units * embedding_dim + embedding_dim * vocab) if tied else 2 * units * vocab
    return 3.0 * (steps * 2 * 4 * units * (embedding_dim + units) + output)


@dataclass(frozen=True)
class MarkovResult:
    order: int
    score: Score
    seconds: float


def markov_baselines(
    tokens: list[str], vocab_cap: int | None, n_input: int, figures: dict[str, Any]
) -> list[MarkovResult]:
    """Markov chains on the LSTM's own split (recomputed exactly as model/training_data.py does)."""
    vocabulary = Vocabulary.build(tokens, max_size=None if vocab_cap is None else vocab_cap + 1)
    ids = np.asarray(vocabulary.encode(tokens), dtype=np.int32)
    defaults = TrainingConfig()
    train_idx, val_idx = split_indices(
        window_count(len(ids), n_input), defaults.validation_fraction, n_input
    )
    if (len(train_idx), len(val_idx), len(vocabulary)) != (
        figures["training_windows"],
        figures["validation_windows"],
        figures["vocabulary_size"],
    ):
        raise RuntimeError("the bench's split or vocabulary differs from the one training used")
    x_train, y_train = gather(ids, train_idx, n_input)
    x_val, y_val = gather(ids, val_idx, n_input)
    results = []
    for order in (2, 3):
        t0 = time.perf_counter()
        chain = KneserNeyMarkov(order, len(vocabulary)).fit(x_train.tolist(), y_train.tolist())
        score = chain.score(x_val.tolist(), y_val.tolist())
        results.append(MarkovResult(order, score, time.perf_counter() - t0))
    return results


# --- reporting ------------------------------------------------------------------------------------


def epoch_seconds(history: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """(epoch 1 seconds, median seconds of the later full epochs)."""
    ends = [0.0] + [float(h["seconds"]) for h in history]
    durations = [(ends[i + 1] - ends[i], bool(h.get("partial"))) for i, h in enumerate(history)]
    first = durations[0][0] if durations and not durations[0][1] else None
    later = [d for d, partial in durations[1:] if not partial]
    return first, (statistics.median(later) if later else None)


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def machine_line() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    versions = []
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "numpy"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return (
        f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
        + ", ".join(versions)
    )


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run")
    parser.add_argument(
        "--books",
        default=",".join(b.key for b in BOOKS),
        help="comma-separated: " + ", ".join(b.key for b in BOOKS),
    )
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--vocab-cap", type=int, default=10_000, help="symbols kept, + <unk>")
    parser.add_argument("--seed", type=int, default=None, help="seed of the book runs")
    parser.add_argument("--epochs", type=int, default=None, help="override the per-book epochs")
    parser.add_argument("--seconds", type=float, default=None, help="override per-book budget")
    parser.add_argument(
        "--n-input", type=int, default=None, help="context length; default: chosen by size"
    )
    parser.add_argument("--learning-rate", type=float, default=None, help="default: product's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: product's")
    parser.add_argument("--thread-seconds", type=float, default=20.0)
    parser.add_argument("--thread-rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--no-threads", action="store_true", help="skip the threading runs")
    args = parser.parse_args()
    wanted = [k.strip() for k in args.books.split(",") if k.strip()]
    books = [b for b in BOOKS if b.key in wanted]
    unknown = set(wanted) - {b.key for b in BOOKS}
    if unknown or not books:
        parser.error(f"unknown books: {', '.join(sorted(unknown)) or '(none)'}")

    started = time.perf_counter()
    print(f"# bench_books {datetime.date.today().isoformat()} — {machine_line()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"start: {load_line()}")
    peak_before, per_size = numpy_peak()
    print(
        "numpy float32 matmul: "
        + ", ".join(f"{n}^3 {g:.0f}" for n, g in per_size.items())
        + " GFLOP/s (median of repeats)"
    )

    rows, eta_rows, cap_rows, notes = [], [], [], []
    results: list[tuple[Book, dict[str, Any], list[MarkovResult], list[str]]] = []
    for book in books:
        path = CORPORA / book.filename
        epochs = args.epochs or (QUICK_EPOCHS if args.quick else book.max_epochs)
        budget = args.seconds or (QUICK_SECONDS if args.quick else book.max_seconds)
        print(f"training {book.key}: up to {epochs} epochs / {budget:.0f} s ...", flush=True)
        out = train_in_fresh_process(
            TrainJob(
                str(path),
                args.units,
                args.vocab_cap,
                epochs,
                budget,
                seed=args.seed,
                n_input=args.n_input,
                learning_rate=args.learning_rate,
                batch_size=args.batch_size,
            )
        )
        tokens = tokenize(path.read_text(encoding="utf-8"))
        markov = markov_baselines(tokens, args.vocab_cap, out["config"]["n_input"], out["figures"])
        results.append((book, out, markov, tokens))

    shapes: list[tuple[int, int, int]] = []
    for book, out, markov, tokens in results:
        f, c = out["figures"], out["config"]
        flops = flops_per_training_window(
            c["n_input"], c["units"], c["embedding_dim"], c["vocab_size"], f["symbols"]
        )
        shapes.append((c["units"], c["embedding_dim"], c["vocab_size"]))
        wps = f["windows_per_second"]
        first, later = epoch_seconds(f["history"])
        rss_gib = out["ru_maxrss_kib"] * 1024 / GIB
        m2, m3 = (m.score for m in markov)
        cap = f["vocabulary_cap"]
        rows.append(
            [
                book.key,
                f"{f['symbols']:,}",
                f"{f['vocabulary_size']:,}" + ("" if cap is None else f" (cap {cap - 1:,}+1)"),
                fmt(f["covered_share"] * 100 if f["covered_share"] is not None else None, ".1f")
                + " %",
                f"{f['epochs']} ({f['stopped']}, best {f['best_epoch']})",
                fmt(first, ".1f") + " / " + fmt(later, ".1f"),
                fmt(wps, ",.0f"),
                fmt(wps * flops / 1e9 if wps else None, ".0f"),
                "PEAK",  # filled in below, after the second peak measurement
                f"{rss_gib:.2f} GiB",
                fmt(f["val_accuracy"], ".3f"),
                fmt(f["val_perplexity"], ".1f"),
                f"{m2.accuracy:.3f}",
                f"{m2.perplexity:.1f}",
                f"{m3.accuracy:.3f}",
                f"{m3.perplexity:.1f}",
            ]
        )
        end1 = next((e for e in out["epoch_ends"] if e["epoch"] == 1), None)
        if end1 is not None:
            predicted = end1["elapsed"] + end1["eta"]
            eta_rows.append(
                [
                    book.key,
                    fmt(f["first_step_seconds"], ".1f"),
                    f"{end1['elapsed']:.1f}",
                    f"{predicted:.1f}",
                    f"{f['seconds']:.1f}",
                    f"{(predicted - f['seconds']) / f['seconds'] * 100:+.0f} %",
                    f["stopped"],
                ]
            )
        vocab_all = Vocabulary.build(tokens)
        cap_rows.append(
            [book.key, f"{len(vocab_all):,}"]
            + [
                f"{(Vocabulary.build(tokens, max_size=k + 1).covered_share or 0) * 100:.1f} %"
                for k in (1000, 2000, 5000)
            ]
        )
        cpu_share = out["cpu_seconds"] / out["train_call_seconds"] / (os.cpu_count() or 1)
        notes.append(
            f"{book.key}: {f['training_windows']:,} training / {f['validation_windows']:,} held-out"
            f" windows; TF import {out['import_seconds']:.1f} s; RSS after import"
            f" {out['rss_imported_kib'] / 1024:.0f} MiB, peak {out['ru_maxrss_kib'] / 1024:.0f} MiB"
            f" (VmHWM {out['vmhwm_kib'] / 1024:.0f} MiB); train_model call"
            f" {out['train_call_seconds']:.1f} s using {out['cpu_seconds']:.0f} CPU s"
            f" ({cpu_share * 100:.0f} % of the cores)"
            "; Markov build+score"
            f" {sum(m.seconds for m in markov):.1f} s; {flops / 1e6:.1f} MFLOP per training window;"
            f" per epoch, evaluation and input overhead beyond the train steps"
            f" {fmt(later - f['training_windows'] / wps if later and wps else None, '.1f')} s"
        )

    largest = max(results, key=lambda r: len(r[3]))[0]
    thread_rows = []
    if not args.no_threads:
        seconds = QUICK_THREAD_SECONDS if args.quick else args.thread_seconds
        rounds = 1 if args.quick else args.thread_rounds
        print(
            f"threading: {largest.key}, {seconds:.0f} s per setting, {rounds} interleaved rounds",
            flush=True,
        )
        rates: dict[str, list[float]] = {label: [] for label, *_ in THREAD_SETTINGS}
        first_steps: dict[str, list[float]] = {label: [] for label, *_ in THREAD_SETTINGS}
        for _ in range(rounds):
            for label, intra, inter, seed, xla in THREAD_SETTINGS:
                out = train_in_fresh_process(
                    TrainJob(
                        str(CORPORA / largest.filename),
                        args.units,
                        args.vocab_cap,
                        1,
                        seconds,
                        seed=seed,
                        intra_op=intra,
                        inter_op=inter,
                        xla=xla,
                        n_input=args.n_input,
                        learning_rate=args.learning_rate,
                    )
                )
                rates[label].append(out["figures"]["windows_per_second"] or float("nan"))
                first_steps[label].append(out["figures"]["first_step_seconds"] or float("nan"))
        base = statistics.median(rates[THREAD_SETTINGS[0][0]])
        for label, *_ in THREAD_SETTINGS:
            median = statistics.median(rates[label])
            thread_rows.append(
                [
                    label,
                    f"{statistics.median(first_steps[label]):.1f}",
                    f"{median:,.0f}",
                    " / ".join(f"{r:,.0f}" for r in rates[label]),
                    f"{median / base:.2f}",
                ]
            )

    peak_after, _ = numpy_peak()
    peak = max(peak_before, peak_after)
    shaped = []
    rows_per_step = args.batch_size or TrainingConfig().batch_size
    for units, emb, vocab in sorted(set(shapes))[-1:]:
        lstm = matmul_gflops(rows_per_step, emb + units, 4 * units)
        dense = matmul_gflops(rows_per_step, units, vocab)
        shaped.append(
            f"[{rows_per_step}x{emb + units}]@[{emb + units}x{4 * units}] {lstm:.0f}, "
            f"[{rows_per_step}x{units}]@[{units}x{vocab}] {dense:.0f}"
        )
    peak_share: dict[str, float] = {}  # book -> training GFLOP/s over the peak
    for row, (book, out, _, _) in zip(rows, results, strict=True):
        f, c = out["figures"], out["config"]
        flops = flops_per_training_window(
            c["n_input"], c["units"], c["embedding_dim"], c["vocab_size"], f["symbols"]
        )
        wps = f["windows_per_second"]
        peak_share[book.key] = wps * flops / 1e9 / peak if wps else math.nan
        row[8] = fmt(peak_share[book.key] * 100 if wps else None, ".0f") + " %"

    print()
    print(
        f"numpy float32 matmul peak: {peak:.0f} GFLOP/s (before training {peak_before:.0f},"
        f" after {peak_after:.0f}); training-shaped numpy matmuls: {'; '.join(shaped)} GFLOP/s"
    )
    lr = args.learning_rate or TrainingConfig().learning_rate
    defaults = TrainingConfig()
    batch = args.batch_size or defaults.batch_size
    print(
        f"model: Embedding by size (model.config.default_embedding_dim) -> LSTM {args.units}"
        f" -> Dense V, n_input {args.n_input or 'by size (model.config.default_n_input)'},"
        f" Adam lr {lr:g}, batch <= {batch}; with the held-out split: dropout"
        f" {defaults.dropout:g}, plateau factor {defaults.plateau_factor},"
        f" smooth unseen {defaults.smooth_unseen}, output tied to the embedding from"
        f" {defaults.tie_min_symbols} symbols"
    )
    print()
    print_table(
        [
            "book",
            "symbols",
            "vocabulary",
            "covered",
            "epochs (stop, best)",
            "s/epoch (1st / later)",
            "windows/s",
            "GFLOP/s",
            "of peak",
            "peak RSS",
            "LSTM acc",
            "LSTM ppl",
            "M2 acc",
            "M2 ppl",
            "M3 acc",
            "M3 ppl",
        ],
        rows,
    )
    share = peak_share[largest.key]
    print(
        f"target (issue 16): {largest.key} at >= {PEAK_SHARE_TARGET:.0%} of the matmul peak:"
        f" {share:.0%} ({'met' if share >= PEAK_SHARE_TARGET else 'missed'}); the baseline"
        " before XLA is the 'no XLA' row of the settings table (not with --no-threads)"
    )
    print("ETA reported at the end of epoch 1 (elapsed + eta) vs the actual training time:")
    print_table(
        ["book", "1st step s", "epoch 1 s", "predicted s", "actual s", "error", "stopped by"],
        eta_rows,
    )
    if thread_rows:
        print(
            "TensorFlow threads and XLA (fresh process per run, 1 partial epoch; medians of the"
            " rounds):"
        )
        print_table(["setting", "1st step s", "windows/s", "each round", "vs default"], thread_rows)
    print("vocabulary cap: share of the text covered at a smaller cap (not trained):")
    print_table(["book", "uncapped", "cap 1,000", "cap 2,000", "cap 5,000"], cap_rows)
    for note in notes:
        print(note)
    print(f"end: {load_line()}; bench wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
