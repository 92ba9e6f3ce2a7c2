"""A training's progress in a terminal (one updating line) or a log (a line per second)."""

from __future__ import annotations

import asyncio
from typing import TextIO

from bot.adapters.training_words import epoch_text, time_left_text
from bot.core.api import JobProgress
from bot.display import known, training_fraction


class ProgressBar:
    """Renders JobProgress to a terminal (one updating line) or a log (a line per second)."""

    def __init__(self, out: TextIO, width: int = 30) -> None:
        self.out = out
        self.width = width
        self.tty = out.isatty()
        self._last = 0.0
        self._shown = False

    def __call__(self, progress: JobProgress) -> None:
        if progress.state == "queued":
            line = f"queued at position {progress.queue_position}"
        else:
            share = training_fraction(
                progress.epoch, progress.max_epochs, progress.elapsed_seconds, progress.eta_seconds
            )
            if progress.state == "done":
                share = 1.0  # the ETA is an estimate; the end may come before it
            filled = round(share * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            epoch = epoch_text(progress.epoch, progress.max_epochs, progress.expected_epochs)
            parts = [f"[{bar}] {epoch}"]
            if progress.loss is not None:
                parts.append(f"loss {progress.loss:.3f}")
            if known(progress.learnable_accuracy):
                parts.append(f"accuracy {progress.learnable_accuracy:.1%}")
            parts.append(f"{progress.elapsed_seconds:.1f} s")
            if progress.state in ("running", "cancelling"):
                if progress.epoch or progress.eta_seconds is not None:
                    parts.append(time_left_text(progress.eta_seconds, progress.expected_epochs))
            else:
                parts.append(progress.state)
            line = "  ".join(parts)
        final = progress.state not in ("queued", "running", "cancelling")
        if self.tty:
            self.out.write("\r" + line.ljust(79))
            if final:
                self.out.write("\n")
            self.out.flush()
            return
        now = asyncio.get_running_loop().time()
        if final or now - self._last >= 1.0 or not self._shown:
            self._last = now
            self._shown = True
            self.out.write(line + "\n")
            self.out.flush()
