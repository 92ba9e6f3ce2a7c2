"""A training's progress in a terminal (one updating line) or a log (a line per second)."""

from __future__ import annotations

import asyncio
from typing import TextIO

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
                share = 1.0  # the ETA counts epochs; a story can be learned long before
            filled = round(share * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            parts = [f"[{bar}] epoch {progress.epoch}/{progress.max_epochs}"]
            if progress.loss is not None:
                parts.append(f"loss {progress.loss:.3f}")
            if known(progress.learnable_accuracy):
                parts.append(f"accuracy {progress.learnable_accuracy:.1%}")
            parts.append(f"{progress.elapsed_seconds:.1f} s")
            if progress.state not in ("running", "cancelling"):
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
