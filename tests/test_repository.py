"""The repository is self-contained: no tracked file names a path outside its own tree.

A test or benchmark that reads a folder beside the clone passes only on a machine that happens to
have that folder; a user's fresh clone never does (``.ci/run`` also runs the suite in a fresh
clone with nothing beside it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Built from pieces so that this file does not name them itself.
_OUTSIDE = ("../" + "shared", "/" + "work/", "shared" + "/corpora", "shared" + " box")
_SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=30
        ).stdout
        return [REPO / name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file of the tree
        return [
            p
            for p in REPO.rglob("*")
            if p.is_file() and not _SKIP_DIRS.intersection(p.relative_to(REPO).parts)
        ]


def test_no_tracked_file_names_a_path_outside_the_repository() -> None:
    offenders = []
    for path in _tracked_files():
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for lineno, line in enumerate(text.splitlines(), 1):
            for needle in _OUTSIDE:
                if needle in line:
                    offenders.append(f"{path.relative_to(REPO)}:{lineno}: {needle!r}")
    assert not offenders, "files naming a path outside the repository:\n" + "\n".join(offenders)


def test_every_corpus_the_tests_read_is_in_the_repository() -> None:
    for name in (
        "belling-the-cat.txt",
        "corpora/fables-of-aesop-jacobs.txt",
        "corpora/aesops-fables-vernon-jones.txt",
        "corpora/grimms-fairy-tales-taylor-edwardes.txt",
        "corpora/README.md",
        "chat/chitchat-12k.txt",
        "chat/README.md",
        "chat/LICENSE",
    ):
        assert (REPO / "data" / name).stat().st_size > 0, name
