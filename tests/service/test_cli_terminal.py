"""What a user sees in a terminal: ``python -m bot ...`` run as a subprocess, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.conftest import REPO

ARTICLE = REPO / "data" / "belling-the-cat.txt"
TINY_TRAINING = "[training]\nunits = 16\nembedding_dim = 16\nmax_epochs = 300\n"


def cli_env() -> dict[str, str]:
    """The user's environment: no TF_CPP_MIN_LOG_LEVEL (the worker must be quiet by itself)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "FABULIST_"))}
    env.pop("DISCORD_TOKEN", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\ndatabase = "{tmp_path / "cli.sqlite3"}"\n{TINY_TRAINING}{extra}',
        encoding="utf-8",
    )
    return config


def fabulist(
    tmp_path: Path, *args: str, stdin: str | None = "", timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env=cli_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_training_prints_no_tensorflow_log_lines(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = fabulist(tmp_path, "--config", str(config), "train", str(ARTICLE), "--channel", "t")
    assert done.returncode == 0, done.stderr
    assert "Trained" in done.stdout or "trained" in done.stdout, done.stdout
    for noise in ("absl", "oneDNN", "InitializeLog", "cpu_feature_guard", "I0000", "W0000"):
        assert noise not in done.stderr and noise not in done.stdout, done.stderr


def test_console_that_trains_nothing_starts_no_training_worker(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = fabulist(tmp_path, "-v", "--config", str(config), "console", stdin="/help\n/quit\n")
    assert done.returncode == 0, done.stderr
    assert "/continue" in done.stdout
    # -v logs "training worker N started" when a worker is spawned; none may be.
    assert "training worker" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_an_empty_file_is_refused_without_starting_a_worker(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    done = fabulist(tmp_path, "-v", "--config", str(config), "train", str(empty))
    assert done.returncode == 1
    assert "training worker" not in done.stderr
    assert "Traceback" not in done.stderr
