"""Every upload and option check fails before any work: nothing stored, no job queued."""

from __future__ import annotations

import codecs
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.config import Config, load_config
from bot.core.api import ContinueOptions, TrainOptions
from bot.core.service import StoryService
from bot.core.uploads import decode_story
from bot.errors import InvalidOption, InvalidUpload, NoModel, NotAllowed
from bot.executors.local import TrainingPool
from bot.store.sqlite import SqliteStoryStore as StoryStore
from tests.service.conftest import ADMIN, MEMBER, STORY, channel, tiny_config


@pytest.fixture
async def offline(config: Config, store: StoryStore) -> AsyncIterator[StoryService]:
    svc = StoryService(config, store, TrainingPool(1))  # its pool never starts: no job may reach it
    await svc.start(warm_workers=False)
    yield svc
    await svc.close()


async def _nothing_stored(store: StoryStore) -> None:
    assert await store.list_stories(1) == []
    assert await store.jobs(1) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "PNG image"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)), "zip archive"),
        (b"\x7fELF\x02\x01\x01\x00" + bytes(200), "executable"),
        ("Le café était très bon, dit-il à l'élève.".encode("latin-1"), "not UTF-8"),
        (b"the cat\x00 sat on the mat and more words here", "control character"),
        (b"the cat \x07 sat on the mat and more words here", "U\\+0007"),
        (b"   \n\t  ", "no text"),
        (b"the cat", "too short"),
        (b"mouse " * 50, "single word"),
        (b"x" * (1 << 20), "too short"),  # one 1 MiB line with no spaces: one symbol
        ("hello".encode("utf-16-le") * 20, "control character"),  # UTF-16 without BOM
    ],
)
async def test_bad_uploads(
    offline: StoryService, store: StoryStore, data: bytes, message: str
) -> None:
    with pytest.raises(InvalidUpload, match=message) as info:
        await offline.train(channel(1), ADMIN, "story.txt", data, TrainOptions())
    assert info.value.message
    await _nothing_stored(store)


def test_accepted_encodings() -> None:
    text = "the mice had a general council, “quoth” the cat. ünïcödé"
    assert decode_story(text.encode())[0] == text
    assert decode_story(codecs.BOM_UTF8 + text.encode())[0] == text
    assert decode_story(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))[0] == text
    assert decode_story(codecs.BOM_UTF16_BE + text.encode("utf-16-be"))[0] == text
    assert decode_story(text.encode("utf-16"))[1] == "utf-16"


async def test_size_checked_before_download(offline: StoryService, tmp_path: Any) -> None:
    limit = offline.config.limits.story_bytes
    offline.check_upload_size(limit)
    with pytest.raises(InvalidUpload, match="limit"):
        offline.check_upload_size(limit + 1)
    with pytest.raises(InvalidUpload, match="empty"):
        offline.check_upload_size(0)


async def test_download_larger_than_limit(store: StoryStore, tmp_path: Any) -> None:
    config = tiny_config(tmp_path, limits={"story_bytes": 100})
    svc = StoryService(config, store, TrainingPool(1))
    with pytest.raises(InvalidUpload, match="limit"):
        await svc.train(channel(1), ADMIN, "s.txt", STORY, TrainOptions())
    await _nothing_stored(store)
    await svc.close()


async def test_too_many_symbols(store: StoryStore, tmp_path: Any) -> None:
    config = tiny_config(tmp_path, limits={"story_symbols": 50})
    svc = StoryService(config, store, TrainingPool(1))
    with pytest.raises(InvalidUpload, match="too long"):
        await svc.train(channel(1), ADMIN, "s.txt", STORY, TrainOptions())
    await _nothing_stored(store)
    await svc.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (TrainOptions(layers=3), "layers"),
        (TrainOptions(layers=0), "layers"),
        (TrainOptions(n_input=0), "n_input"),
        (TrainOptions(n_input=11), "n_input"),
        (TrainOptions(seed=-1), "seed"),
        (TrainOptions(seed=2**40), "seed"),
        (TrainOptions(max_seconds=0), "max_seconds"),
        (TrainOptions(max_seconds=math.nan), "max_seconds"),
        (TrainOptions(max_seconds=10_000), "max_seconds"),
        (TrainOptions(mode="merge"), "mode"),  # type: ignore[arg-type]
    ],
)
async def test_bad_train_options(
    offline: StoryService, store: StoryStore, options: TrainOptions, message: str
) -> None:
    with pytest.raises(InvalidOption, match=message):
        await offline.train(channel(1), ADMIN, "s.txt", STORY, options)
    await _nothing_stored(store)


async def test_member_without_right_cannot_train_or_forget(
    offline: StoryService, store: StoryStore
) -> None:
    with pytest.raises(NotAllowed):
        await offline.train(channel(1), MEMBER, "s.txt", STORY, TrainOptions())
    with pytest.raises(NotAllowed):
        await offline.forget(channel(1), MEMBER)
    await _nothing_stored(store)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ContinueOptions(length=0), "length"),
        (ContinueOptions(length=-5), "length"),
        (ContinueOptions(length=10**9), "length"),
        (ContinueOptions(temperature=-1.0), "temperature"),
        (ContinueOptions(temperature=math.nan), "temperature"),
        (ContinueOptions(temperature=math.inf), "temperature"),
        (ContinueOptions(seed=-1), "seed"),
        (ContinueOptions(seed=2**63), "seed"),
        (ContinueOptions(top_k=0), "top_k"),
    ],
)
async def test_bad_continue_options(
    offline: StoryService, options: ContinueOptions, message: str
) -> None:
    with pytest.raises(InvalidOption, match=message):
        await offline.continue_story(channel(1), "had a general", options)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [("", "at least one word"), ("   ", "at least one word"), ("a " * 40, "limit")],
)
async def test_bad_prompts(offline: StoryService, prompt: str, message: str) -> None:
    with pytest.raises(InvalidOption, match=message):
        await offline.continue_story(channel(1), prompt, ContinueOptions())


async def test_continue_without_model(offline: StoryService) -> None:
    with pytest.raises(NoModel, match="/train"):
        await offline.continue_story(channel(1), "had a general", ContinueOptions())
    assert await offline.complete_word(channel(1), "ha") == []
    assert await offline.training_plot(channel(1)) is None
    card = await offline.story_card(channel(1))
    assert not card.has_model and card.job is None


def test_n_input_left_to_the_story_size_unless_asked(tmp_path: Any) -> None:
    from bot.core.validation import RequestChecks

    by_size = RequestChecks(tiny_config(tmp_path))
    assert "n_input" not in by_size.job_options(TrainOptions()).model
    assert by_size.job_options(TrainOptions(n_input=4)).model["n_input"] == 4
    configured = RequestChecks(tiny_config(tmp_path, training={"n_input": 5}))
    assert configured.job_options(TrainOptions()).model["n_input"] == 5


def test_embedding_dim_left_to_the_story_size_unless_configured(tmp_path: Any) -> None:
    from bot.core.validation import RequestChecks

    configured = RequestChecks(tiny_config(tmp_path))  # embedding_dim = 16
    assert configured.job_options(TrainOptions()).model["embedding_dim"] == 16
    unset = load_config(data={"storage": {"database": str(tmp_path / "f.sqlite3")}}, environ={})
    assert "embedding_dim" not in RequestChecks(unset).job_options(TrainOptions()).model
