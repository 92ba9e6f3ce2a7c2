"""The bot's event-loop lag monitor: its summary and its reset between SIGUSR1 reports."""

from __future__ import annotations

from bot.discord_adapter.runner import LoopLagMonitor


def test_summary_and_reset() -> None:
    monitor = LoopLagMonitor()
    for lag in [0.0005] * 98 + [0.0125, 0.2]:
        monitor.add(lag)
    assert monitor.summary() == "event loop lag: max 200.0 ms, p99 13 ms over 100 samples"
    monitor.report_and_reset()
    assert monitor.summary() == "event loop lag: max 0.0 ms, p99 0 ms over 0 samples"
    monitor.add(0.003)
    assert monitor.summary() == "event loop lag: max 3.0 ms, p99 4 ms over 1 samples"
