"""Helpers for the reliability suite: seeding channels with models through the real store."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from bot.core.store import NewModel, NewStory
from bot.store.sqlite import SqliteStoryStore as StoryStore
from model import Vocabulary, to_bytes, tokenize
from tests.reliability.conftest import synthetic_model

GENERIC = "Something went wrong on my side"
_INTERNALS = re.compile(
    r"Traceback|File \"|Error\(|Exception|sqlite|aiosqlite|<[a-z_.]+ object at 0x|\bNone\b"
)


def friendly(text: str) -> bool:
    """A clear message for a person: not empty, not the bug reply, no Python internals."""
    text = text.strip()
    return bool(text) and len(text) <= 2000 and GENERIC not in text and not _INTERNALS.search(text)


async def seed_model(
    store: StoryStore,
    channel_id: int,
    text: str,
    *,
    guild_id: int | None = 100,
    name: str | None = None,
    units: int = 16,
    seed: int = 0,
    blob: bytes | None = None,
) -> tuple[int, int]:
    """Store ``text`` as the channel's story and a model over its vocabulary, made active.

    The model has random weights (numpy only): the storage and generation paths are the real
    ones, only TensorFlow's training is skipped. Returns (model id, version).
    """
    tokens = tokenize(text)
    vocabulary = Vocabulary.build(tokens)
    model = synthetic_model(list(vocabulary.symbols), units=units, seed=seed)
    data = text.encode()
    job = await store.add_story_and_job(
        channel_id=channel_id,
        guild_id=guild_id,
        channel_name=name,
        story=NewStory(
            filename="seed.txt",
            uploader_id=1,
            uploader_name="seeder",
            text=text,
            sha256=hashlib.sha256(data).hexdigest(),
            encoding="utf-8",
            bytes=len(data),
            symbols=len(tokens),
            vocabulary_size=len(vocabulary),
        ),
        append=False,
        requested_by=1,
        requested_by_name="seeder",
        options={},
    )
    record = await store.activate_model(
        job_id=job.id,
        channel_id=channel_id,
        model=NewModel(
            config=model.config.to_dict(),
            vocabulary=list(vocabulary.symbols),
            blob=to_bytes(model) if blob is None else blob,
            figures=model.figures.to_dict(),
            options={},
        ),
        story_ids=job.story_ids,
        keep_versions=3,
    )
    return record.id, record.version


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
