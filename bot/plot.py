"""Training plot: loss and accuracy per epoch as a PNG (matplotlib, Agg backend).

Rendering takes tens of milliseconds, so the service calls this in a thread executor.
"""

from __future__ import annotations

import io
from typing import Any

from model import TrainingFigures


def training_plot_png(figures: TrainingFigures, *, title: str | None = None) -> bytes:
    """PNG bytes of loss (left axis) and accuracy (right axis) per epoch."""
    from matplotlib.figure import Figure  # Figure + Agg canvas: no pyplot global state

    history: list[dict[str, Any]] = list(figures.history)
    epochs = [int(h.get("epoch", i + 1)) for i, h in enumerate(history)]
    figure = Figure(figsize=(6.4, 3.6), dpi=100)
    loss_axis = figure.add_subplot(1, 1, 1)
    accuracy_axis = loss_axis.twinx()
    lines = []
    for key, label, axis, style in (
        ("loss", "loss", loss_axis, "-"),
        ("val_loss", "validation loss", loss_axis, "--"),
        ("accuracy", "accuracy", accuracy_axis, "-"),
        ("learnable_accuracy", "learnable accuracy", accuracy_axis, ":"),
        ("val_accuracy", "validation accuracy", accuracy_axis, "--"),
    ):
        points = [
            (e, h[key]) for e, h in zip(epochs, history, strict=True) if h.get(key) is not None
        ]
        if points:
            color = "tab:red" if axis is loss_axis else "tab:blue"
            (line,) = axis.plot(*zip(*points, strict=True), style, color=color, label=label)
            lines.append(line)
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss", color="tab:red")
    accuracy_axis.set_ylabel("accuracy", color="tab:blue")
    accuracy_axis.set_ylim(0.0, 1.02)
    if lines:
        labels = [str(line.get_label()) for line in lines]
        loss_axis.legend(lines, labels, loc="center right", fontsize=8)
    loss_axis.set_title(title or f"Training: {figures.epochs} epochs, {figures.seconds:.1f} s")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
