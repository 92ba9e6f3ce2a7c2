"""What a user sees in a terminal: ``python -m bot ...`` run as a subprocess, as a user runs it."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, long_story

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


def _db_rows(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(tmp_path / "cli.sqlite3")) as db:
        return list(db.execute(sql))


def test_global_options_are_accepted_after_the_command(tmp_path: Path) -> None:
    db = tmp_path / "after.sqlite3"
    done = fabulist(tmp_path, "status", "--channel", "a", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert db.is_file()
    done = fabulist(tmp_path, "status", "--config", str(write_config(tmp_path)))
    assert done.returncode == 0, done.stderr


def test_channel_arguments_are_checked(tmp_path: Path) -> None:
    done = fabulist(tmp_path, "status", "--channel", "")
    assert done.returncode == 2 and "channel name cannot be empty" in done.stderr
    done = fabulist(tmp_path, "status", "--channel", "a", "--channel-id", "3")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr


def test_every_command_option_has_help_text() -> None:
    from bot.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {action.dest}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not action.help and action.dest != "help"
    ]
    assert not missing, missing


def test_a_config_that_is_not_text_is_one_clear_line(tmp_path: Path) -> None:
    png = tmp_path / "some.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    done = fabulist(tmp_path, "--config", str(png), "status")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"configuration error: config file {png} is not a text file (a TOML config is UTF-8 text)"
    ]


def test_a_mistyped_train_permission_stops_start_up_with_a_suggestion(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[permissions]\ntrain_permission = "manage_channel"\n')
    done = fabulist(tmp_path, "--config", str(config), "status")
    assert done.returncode == 2
    assert "did you mean 'manage_channels'?" in done.stderr and "Traceback" not in done.stderr
    config = write_config(tmp_path, '[permissions]\ntrain_permission = "manage_messages"\n')
    assert fabulist(tmp_path, "--config", str(config), "status").returncode == 0


def test_unreachable_discord_is_one_line_and_a_failure_exit(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(
        tmp_path, f'[discord]\ntoken = "x"\napi_base_url = "http://127.0.0.1:{port}/api/v10"\n'
    )
    done = fabulist(tmp_path, "--config", str(config), "run", timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"cannot reach Discord (http://127.0.0.1:{port}/api/v10" in done.stderr


def test_forget_asks_first_and_refuses_without_a_terminal(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))
    fabulist(tmp_path, "--config", config, "status", "--channel", "f")  # creates the database
    done = fabulist(tmp_path, "--config", config, "forget", "--channel", "f", stdin="y\n")
    assert done.returncode == 1 and "add --yes to confirm" in done.stderr
    done = fabulist(tmp_path, "--config", config, "forget", "--channel", "f", "--yes")
    assert done.returncode == 0 and "Forgot channel f." in done.stdout
    # The console asks; anything but y/yes deletes nothing.
    done = fabulist(tmp_path, "--config", config, "console", stdin="/forget\nn\n/quit\n")
    assert "Delete every story, model and job of channel console? [y/N]" in done.stdout
    assert "Nothing was deleted." in done.stdout
    done = fabulist(tmp_path, "--config", config, "console", stdin="/forget\ny\n/quit\n")
    assert "Forgot channel console." in done.stdout


def test_the_cli_names_its_own_train_command(tmp_path: Path) -> None:
    done = fabulist(tmp_path, "--config", str(write_config(tmp_path)), "continue", "a", "b")
    assert done.returncode == 1
    assert "Use `python -m bot train FILE` first." in done.stderr and "/train" not in done.stderr


@pytest.mark.slow
def test_long_story_summary_import_twice_and_prompts(tmp_path: Path) -> None:
    """A story of 6,000+ symbols trained for one epoch: "1 epoch", never "nan%"; re-importing
    its export stores no second copy; the console takes [key:value]; an unknown word outside
    the context window is accepted."""
    config = str(write_config(tmp_path).resolve())
    (tmp_path / "config.toml").write_text(
        (tmp_path / "config.toml").read_text().replace("max_epochs = 300", "max_epochs = 1")
    )
    story = tmp_path / "long.txt"
    story.write_bytes(long_story(6_000))
    done = fabulist(tmp_path, "--config", config, "train", str(story), "--channel", "l")
    assert done.returncode == 0, done.stderr
    assert "1 epoch in" in done.stdout and "1 epochs" not in done.stdout, done.stdout
    assert "nan" not in done.stdout, done.stdout
    status = fabulist(tmp_path, "--config", config, "status", "--channel", "l").stdout
    assert "1 epoch in" in status and "nan" not in status, status

    export = tmp_path / "l.fabulist.zip"
    done = fabulist(tmp_path, "--config", config, "export", "--channel", "l", "--out", str(export))
    assert done.returncode == 0, done.stderr
    for _ in range(2):
        done = fabulist(tmp_path, "--config", config, "import", str(export), "--channel", "m")
        assert done.returncode == 0, done.stderr
    (count,) = _db_rows(tmp_path, "SELECT count(*) FROM stories")[0]
    assert count == 2  # one in channel l, one (not two) in channel m

    done = fabulist(tmp_path, "--config", config, "continue", "zebra", "the", "mice", "had")
    assert "Use `python -m bot train" in done.stderr  # channel "console" has no model
    # A long story reads 10 symbols (n_input by size): "zebra" is the 11th word from the end.
    known = [
        "the",
        "mice",
        "had",
        "a",
        "general",
        "council",
        "to",
        "consider",
        "what",
        "measures",
        "they",
    ]
    done = fabulist(tmp_path, "--config", config, "continue", "zebra", *known, "--channel", "l")
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    assert "didn't know" not in done.stdout, done.stdout  # "zebra" was not read, so not named
    done = fabulist(
        tmp_path,
        "--config",
        config,
        "console",
        "--channel",
        "l",
        stdin="/continue the mice had [length:5] [temperature:0.8] [seed:1]\n/quit\n",
    )
    assert done.returncode == 0
    assert "unknown" not in done.stdout.lower() and "The mice had" in done.stdout, done.stdout


@pytest.mark.slow
def test_a_second_training_is_refused_and_sigterm_interrupts_like_ctrl_c(tmp_path: Path) -> None:
    config = str(write_config(tmp_path).resolve())
    story = tmp_path / "long.txt"
    story.write_bytes(long_story(30_000))
    first = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", config, "train", str(story), "--channel", "s"],
        cwd=tmp_path,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As for `cmd &` in a script: SIGINT ignored, so SIGTERM must not rely on it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert first.stdout is not None
        line = first.stdout.readline()  # the first progress line: the job is open
        assert "epoch" in line or "queued" in line, line
        second = fabulist(tmp_path, "--config", config, "train", str(ARTICLE), "--channel", "s")
        assert second.returncode == 1
        assert "This channel is already training (job #" in second.stderr, second.stderr
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, err
    assert "stays in the channel's stories" in err and "Traceback" not in err
    states = _db_rows(tmp_path, "SELECT state FROM jobs ORDER BY id")
    assert states == [("interrupted",)], states
