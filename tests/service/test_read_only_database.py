"""A database this user cannot write: reading commands work, writes get one clear message.

Simulated: the tests run as root, for whom file modes change nothing, so ``bot.store.sqlite``'s
``_writable`` check is made to answer False (what ``os.access`` answers for another user on a
read-only file or folder). What follows is real: the database is opened with SQLite's
``mode=ro`` URI, which refuses every write itself.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import bot.store.sqlite.connection
from bot.cli import main
from tests.service.conftest import REPO

pytestmark = pytest.mark.slow
ARTICLE = REPO / "data" / "belling-the-cat.txt"


def _run(config: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["--config", str(config), *args], out), out.getvalue()


def test_reading_commands_work_on_a_database_that_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\ndatabase = "{tmp_path / "ro.sqlite3"}"\n'
        "[training]\nunits = 16\nembedding_dim = 16\nmax_epochs = 300\n"
    )
    code, _ = _run(config, "train", str(ARTICLE), "--channel", "a", "--seed", "1")
    assert code == 0
    greedy = ("--temperature", "0")  # one possible reply
    _, before = _run(config, "continue", "had", "a", "general", "--channel", "a", *greedy)

    monkeypatch.setattr(bot.store.sqlite.connection, "_writable", lambda path: False)
    code, text = _run(config, "status", "--channel", "a")
    assert code == 0 and "model version 1" in text
    code, text = _run(config, "continue", "had", "a", "general", "--channel", "a", *greedy)
    assert code == 0 and text == before
    capsys.readouterr()
    code, _ = _run(config, "train", str(ARTICLE), "--channel", "a")
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot save" in err and "read-only" in err
    assert "not a usable SQLite database" not in err and "Traceback" not in err
