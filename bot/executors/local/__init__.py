"""The embedded default executor: long-lived spawned training processes on this machine.

``child`` is the program each process runs; ``pool`` is the bot side that feeds them.
"""

from __future__ import annotations

from bot.executors.local.pool import LocalProcessExecutor, TrainingPool, describe_exit

__all__ = ["LocalProcessExecutor", "TrainingPool", "describe_exit"]
