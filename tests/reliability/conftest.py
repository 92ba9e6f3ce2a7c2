"""Shared pieces of the reliability suite: the ledger, database snapshots, helpers.

The ledger counts what the suite really did: bad inputs tried, faults injected, requests served
and security checks made, with the losses found for each (an input that changed stored data or
got no friendly private answer, a fault that lost a committed story or model, a request that
failed). Each test records its outcome *before* asserting on it, so a failing run shows non-zero
losses in the summary too. At the end of the session one line per section is printed, e.g.
``bad input: 74 inputs tried, 0 losses``.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import (  # noqa: F401  (re-exported to the reliability tests)
    LOOP_LAG_TARGET_MS,
    REPLY_P99_TARGET_SECONDS,
    REPO,
    STORY,
    synthetic_blob,
    synthetic_model,
    target_line,
)

SECTIONS = {
    "bad input": "inputs tried",
    "faults": "faults injected",
    "load": "requests served",
    "security": "checks made",
}


@dataclass
class Ledger:
    tried: Counter[str] = field(default_factory=Counter)
    losses: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def record(self, section: str, ok: bool, what: str, count: int = 1) -> bool:
        """Count ``count`` items of ``section``; a failed one is a loss (and noted)."""
        assert section in SECTIONS, section
        self.tried[section] += count
        if not ok:
            self.losses[section] += 1
            self.notes.append(f"{section}: LOSS {what}")
        return ok

    def figure(self, line: str) -> None:
        self.figures.append(line)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tried": dict(self.tried),
            "losses": dict(self.losses),
            "notes": self.notes,
            "figures": self.figures,
        }

    def merge(self, other: dict[str, Any]) -> None:
        """Add a ledger sent as :meth:`as_dict` (a pytest-xdist worker's)."""
        self.tried.update(other["tried"])
        self.losses.update(other["losses"])
        self.notes.extend(other["notes"])
        self.figures.extend(other["figures"])

    def summary(self) -> list[str]:
        return [
            f"{section}: {self.tried[section]} {noun}, {self.losses[section]} losses"
            for section, noun in SECTIONS.items()
        ]


LEDGER_KEY = pytest.StashKey[Ledger]()


def _ledger(config: pytest.Config) -> Ledger:
    if LEDGER_KEY not in config.stash:
        config.stash[LEDGER_KEY] = Ledger()
    return config.stash[LEDGER_KEY]


@pytest.fixture(scope="session")
def ledger(pytestconfig: pytest.Config) -> Ledger:
    return _ledger(pytestconfig)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # A pytest-xdist worker hands its ledger to the controller (merged in tests/conftest.py).
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and LEDGER_KEY in session.config.stash:
        workeroutput["reliability_ledger"] = session.config.stash[LEDGER_KEY].as_dict()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if LEDGER_KEY not in config.stash:
        return
    print_ledger(terminalreporter, config.stash[LEDGER_KEY])


def print_ledger(terminalreporter: Any, book: Ledger) -> None:
    terminalreporter.section("reliability summary")
    for line in book.figures:
        terminalreporter.write_line(line)
    for line in book.notes:
        terminalreporter.write_line(line)
    for line in book.summary():
        terminalreporter.write_line(line)


# -- database snapshots ------------------------------------------------------------------------

TABLES = ("channels", "stories", "models", "model_stories", "jobs")


def snapshot(db: Path) -> dict[str, Any]:
    """What must not change: row counts, active model ids, story and model hashes, job states."""
    if not db.exists():
        return {"exists": False}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # noqa: S608
        active = conn.execute(
            "SELECT channel_id, active_model_id FROM channels ORDER BY channel_id"
        ).fetchall()
        stories = conn.execute("SELECT id, sha256, text FROM stories ORDER BY id").fetchall()
        models = conn.execute("SELECT id, version, blob FROM models ORDER BY id").fetchall()
        jobs = conn.execute("SELECT id, state FROM jobs ORDER BY id").fetchall()
    conn.close()
    return {
        "exists": True,
        "counts": counts,
        "active": active,
        "stories": [(i, s, hashlib.sha256(t.encode()).hexdigest()) for i, s, t in stories],
        "models": [(i, v, hashlib.sha256(b).hexdigest()) for i, v, b in models],
        "jobs": jobs,
    }


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        fk = conn.execute("PRAGMA foreign_key_check").fetchall()
    conn.close()
    result = "; ".join(str(r[0]) for r in rows)
    return result if not fk else f"{result}; foreign key violations {fk}"


# -- synthetic models (numpy only: a valid blob in milliseconds, no TensorFlow) ---------------
