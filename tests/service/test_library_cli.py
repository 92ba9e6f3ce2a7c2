"""The library commands of the CLI (``python -m bot ...``) and the console, end to end offline."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from bot.cli import main
from bot.console import Console
from bot.core.service import StoryService
from tests.service.conftest import REPO

pytestmark = pytest.mark.slow

ARTICLE = REPO / "data" / "belling-the-cat.txt"


def _run(config: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--config", str(config), *args], out)
    return code, out.getvalue()


def test_cli_export_import_stories_versions_remove(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\ndatabase = "{tmp_path / "cli.sqlite3"}"\n'
        "[training]\nunits = 16\nembedding_dim = 16\nmax_epochs = 300\n"
    )
    code, text = _run(config, "train", str(ARTICLE), "--channel", "a", "--seed", "1")
    assert code == 0, text
    export = tmp_path / "a.fabulist.zip"
    code, text = _run(config, "export", "--channel", "a", "--out", str(export))
    assert code == 0 and export.stat().st_size > 0, text
    code, text = _run(config, "import", str(export), "--channel", "b")
    assert code == 0 and "Imported 1 story" in text, text
    greedy = ("continue", "had", "a", "general", "--length", "20", "--temperature", "0")
    _, here = _run(config, *greedy, "--channel", "a")
    _, there = _run(config, *greedy, "--channel", "b")
    assert here == there and here.startswith("Had a general council to consider")
    code, text = _run(config, "stats", "--channel", "a")
    assert code == 0 and "Stories: 1 (204 symbols: #" in text, text
    assert "Vocabulary: 112 words" in text and "Model versions: v1 (active)" in text
    assert "Trainings run: 1" in text and "Replies served: 1" in text
    code, text = _run(config, "stats", "--channel", "b")  # an import is no training
    assert code == 0 and "Trainings run: 0" in text and "Replies served: 1" in text, text
    # Words the story never uses are named under the reply (issue 23), not refused.
    code, text = _run(config, "continue", "i", "hate", "mondays", "--channel", "b")
    # The prompt, then a sampled continuation (which may begin with punctuation).
    assert code == 0 and text.startswith("I hate mondays") and len(text.split()) > 4, text
    assert "\n(I didn't know 'hate' (did you mean " in text and "or 'mondays'.)\n" in text, text
    code, text = _run(config, "stories", "--channel", "b")
    assert code == 0 and "belling-the-cat.txt by console" in text
    story_id = re.search(r"#(\d+)", text).group(1)  # type: ignore[union-attr]
    code, text = _run(config, "versions", "--channel", "b")
    assert code == 0 and "*v1" in text
    code, text = _run(config, "rollback", "--channel", "b")
    assert code == 1  # there is no earlier version
    code, text = _run(config, "remove", story_id, "--channel", "b")
    assert code == 0 and f"Removed story #{story_id}" in text and "No model answers" in text
    code, text = _run(config, "stories", "--channel", "b")
    assert "no stories" in text
    # A file that is not an export is refused by import, with exit status 1.
    code, _ = _run(config, "import", str(ARTICLE), "--channel", "c")
    assert code == 1


async def test_console_story_commands(service: StoryService, tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(service, out, "lib")
    await console.handle(f"/train {ARTICLE} seed:1")
    await console.handle("/story list")
    assert "belling-the-cat.txt by console" in out.getvalue()
    await console.handle("/story versions")
    assert "*v1" in out.getvalue()
    target = tmp_path / "lib.fabulist.zip"
    await console.handle(f"/story export {target}")
    await console.handle("/channel copy")
    await console.handle(f"/train {target}")
    assert "Imported 1 story" in out.getvalue()
    await console.handle("/continue had a general length:5 temperature:0")
    assert "Had a general council to consider" in out.getvalue()
    await console.handle("/story stats")
    assert "Channel copy:\n  Stories: 1 (204 symbols" in out.getvalue()
    assert "  Replies served: 1\n" in out.getvalue()
    await console.handle("/continue the mice had a generel length:5")
    assert "The mice had a generel " in out.getvalue()
    assert "\n(I didn't know 'generel': did you mean 'general'?)\n" in out.getvalue()
    await console.handle("/story show")
    assert "model version 1" in out.getvalue()
    await console.handle("/stories")  # the short form; the copy's story comes last
    story_id = re.findall(r"#(\d+) belling", out.getvalue())[-1]
    await console.handle(f"/story remove {story_id}")
    assert "Removed story" in out.getvalue()
