"""Helpers for the reliability suite: seeding channels with models through the real store."""

from __future__ import annotations

import re
from typing import Any

from tests.support import seed_model  # noqa: F401  (re-exported to the reliability tests)

GENERIC = "Something went wrong on my side"
_INTERNALS = re.compile(
    r"Traceback|File \"|Error\(|Exception|sqlite|aiosqlite|<[a-z_.]+ object at 0x|\bNone\b"
)


def friendly(text: str) -> bool:
    """A clear message for a person: not empty, not the bug reply, no Python internals."""
    text = text.strip()
    return bool(text) and len(text) <= 2000 and GENERIC not in text and not _INTERNALS.search(text)


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
