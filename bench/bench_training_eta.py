"""How true is the progress ETA (issue 25)? Trains stories with the product's defaults and compares
the ETA each end-of-epoch progress report gave with the time the training really went on.

Stories (``--stories``, comma-separated): ``jacobs`` (the whole of Jacobs' Aesop), ``vernon-jones``
(the whole of Vernon Jones' Aesop, about 49,000 symbols), ``grimm-100`` and ``grimm-30`` (the
first 100 KB and 30 KB of Grimm's tales), ``vernon-30`` (the first 30 KB of Vernon Jones). Each
trains unseeded, as the bot trains, with ``TrainingConfig()``'s defaults except the budget
(``--max-seconds``), the n_input ``model.config.default_n_input`` picks and the bot's default
vocabulary cap.

For the reports after epochs 2 and 3 it prints the ETA (the predicted remaining seconds), the
expected epoch count if the report carries one, the remaining seconds the training really took
(its end minus the report's elapsed time), their ratio and whether the ratio is within
``1 ± --tolerance`` (default 0.3). The machine may be shared: the load average is printed at the
start, after each story and at the end. ``--dump FILE`` writes every report and the histories as
JSON; ``--replay FILE`` trains nothing and replays such a file's trainings through the current
estimator (``model.training_estimate``): each report's held-out losses so far give the expected
epochs, and its ETA is rescaled to them with the report's own seconds per epoch (its ETA over the
epochs it expected), so an estimator change is measured on the same trainings.

Usage: ``.venv/bin/python bench/bench_training_eta.py [--stories jacobs,grimm-30]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model import TrainingConfig, tokenize  # noqa: E402
from model.config import default_n_input  # noqa: E402
from model.training_progress import TrainingProgress  # noqa: E402

CORPORA = ROOT / "data" / "corpora"
STORIES: dict[str, tuple[str, int | None]] = {  # name: (file, KB cut or None for the whole)
    "jacobs": ("fables-of-aesop-jacobs.txt", None),
    "vernon-jones": ("aesops-fables-vernon-jones.txt", None),
    "grimm-100": ("grimms-fairy-tales-taylor-edwardes.txt", 100),
    "grimm-30": ("grimms-fairy-tales-taylor-edwardes.txt", 30),
    "vernon-30": ("aesops-fables-vernon-jones.txt", 30),
}
VOCABULARY_CAP = 10_000  # the bot's default limits.vocabulary (+ <unk>)
CHECKED_EPOCHS = (2, 3)


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"


def story_text(name: str) -> str:
    filename, kb = STORIES[name]
    text = (CORPORA / filename).read_text(encoding="utf-8")
    return text if kb is None else text[: kb * 1024]


def train_story(name: str, max_seconds: float) -> dict[str, Any]:
    """Train one story; its end-of-epoch reports and figures as plain values."""
    from model.training import train_model

    tokens = tokenize(story_text(name))
    reports: list[dict[str, Any]] = []

    def on_progress(p: TrainingProgress) -> None:
        if p.step == p.steps_per_epoch:
            reports.append(
                {
                    "epoch": p.epoch,
                    "elapsed": p.elapsed_seconds,
                    "eta": p.eta_seconds,
                    "expected_epochs": getattr(p, "expected_epochs", None),
                    "val_loss": p.val_loss,
                }
            )

    t0 = time.perf_counter()
    model = train_model(
        tokens,
        {"n_input": default_n_input(len(tokens))},
        TrainingConfig(max_seconds=max_seconds),
        on_progress=on_progress,
        vocabulary_max_size=VOCABULARY_CAP + 1,
    )
    figures = model.figures
    return {
        "story": name,
        "symbols": len(tokens),
        "wall": time.perf_counter() - t0,
        "seconds": figures.seconds,
        "epochs": figures.epochs,
        "stopped": figures.stopped,
        "best_epoch": figures.best_epoch,
        "reports": reports,
        "history": figures.history,
    }


def replayed(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with its reports' expected epochs and ETAs as the current estimator gives them."""
    from model.training_estimate import expected_epochs

    defaults = TrainingConfig()
    losses = [entry["val_loss"] for entry in result["history"]]
    reports = []
    for report in result["reports"]:
        epoch, eta, old = report["epoch"], report["eta"], report["expected_epochs"]
        expected = expected_epochs(
            losses[:epoch],
            min_improvement=defaults.min_improvement,
            patience=defaults.patience,
            max_epochs=defaults.max_epochs,
            rebound_improvement=defaults.rebound_improvement,
        )
        if expected is not None and eta is not None and old is not None and old > epoch:
            eta = eta / (old - epoch) * (expected - epoch)
        else:
            eta = None
        reports.append({**report, "expected_epochs": expected, "eta": eta})
    return {**result, "reports": reports}


def check_row(result: dict[str, Any], epoch: int, tolerance: float) -> list[str]:
    """The ETA after ``epoch`` against the real remaining time, as table cells."""
    report = next((r for r in result["reports"] if r["epoch"] == epoch), None)
    if report is None:
        return ["-", "-", "-", "-", "ended before"]
    actual = result["seconds"] - report["elapsed"]
    expected = report["expected_epochs"]
    expected_cell = "-" if expected is None else f"{expected:.1f}"
    if report["eta"] is None:
        return [expected_cell, "unknown", f"{actual:.1f}", "-", "no estimate"]
    ratio = report["eta"] / actual if actual > 0 else float("inf")
    ok = "yes" if abs(ratio - 1.0) <= tolerance else "no"
    return [expected_cell, f"{report['eta']:.1f}", f"{actual:.1f}", f"{ratio:.2f}", ok]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", default="jacobs,grimm-100,grimm-30,vernon-30")
    parser.add_argument("--max-seconds", type=float, default=TrainingConfig().max_seconds)
    parser.add_argument("--tolerance", type=float, default=0.3)
    parser.add_argument("--dump", type=Path, default=None, help="write reports as JSON")
    parser.add_argument("--replay", type=Path, default=None, help="replay a --dump file")
    args = parser.parse_args()
    names = [name for name in args.stories.split(",") if name]
    unknown = sorted(set(names) - set(STORIES))
    if unknown:
        parser.error(f"unknown stories {unknown}; known: {', '.join(STORIES)}")

    print(f"# bench_training_eta {datetime.date.today().isoformat()}, {os.cpu_count()} cores")
    print("command: python bench/bench_training_eta.py " + " ".join(sys.argv[1:]))
    print(f"start: {load_line()}")
    results = []
    if args.replay is not None:
        results = [replayed(result) for result in json.loads(args.replay.read_text())]
        names = []
    for name in names:
        result = train_story(name, args.max_seconds)
        results.append(result)
        print(
            f"  {name}: {result['symbols']:,} symbols, {result['epochs']} epochs"
            f" ({result['stopped']}, best {result['best_epoch']}), {result['seconds']:.1f} s"
            f" ({load_line()})",
            flush=True,
        )
    header = ["story", "symbols", "epochs (stop)", "s"]
    for epoch in CHECKED_EPOCHS:
        header += [f"e{epoch} expected epochs", f"e{epoch} ETA s", "actual s", "ratio", "±30 %"]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for result in results:
        row = [
            result["story"],
            f"{result['symbols']:,}",
            f"{result['epochs']} ({result['stopped']})",
            f"{result['seconds']:.1f}",
        ]
        for epoch in CHECKED_EPOCHS:
            row += check_row(result, epoch, args.tolerance)
        print("| " + " | ".join(row) + " |")
    print(f"\nend: {load_line()}")
    if args.dump is not None:
        args.dump.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
