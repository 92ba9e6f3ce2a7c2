"""Word filters through the service: per server, admins only, applied to every continuation, to
prompts, to uploaded stories (masked or refused by ``[filters] on_story``) and to stories
learned from history (always masked)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import Config
from bot.core.api import ContinueOptions, HistoryMessage, TrainOptions
from bot.core.service import StoryService
from bot.errors import InvalidOption, InvalidUpload, NotAllowed, NotFound
from bot.executors.local import TrainingPool
from bot.store.sqlite import SqliteStoryStore as StoryStore
from model import Vocabulary, to_bytes, tokenize
from tests.service.conftest import ADMIN, MEMBER, channel, tiny_config
from tests.support import STORY, seed_model, synthetic_model

GUILD_A, GUILD_B = 100, 200
TEXT = STORY.decode()


def _cat_loving_blob() -> bytes:
    """A model of the article's vocabulary that says "cat" whenever it may (dense bias)."""
    vocabulary = Vocabulary.build(tokenize(TEXT))
    model = synthetic_model(list(vocabulary.symbols), seed=1)
    model.weights["dense_bias"][vocabulary.id_of("cat")] = 6.0
    return to_bytes(model)


async def _replies(service: StoryService, channel_id: int, guild_id: int, n: int) -> list[str]:
    out = []
    for seed in range(n):
        options = ContinueOptions(length=24, temperature=1.0, seed=seed)
        reply = await service.continue_story(channel(channel_id, guild_id), "the mice", options)
        out.append(reply.symbols)
    return [" ".join(symbols) for symbols in out]


async def test_filters_are_per_server_and_never_generated(
    service: StoryService, store: StoryStore
) -> None:
    blob = _cat_loving_blob()
    await seed_model(store, 1, TEXT, guild_id=GUILD_A, blob=blob)
    await seed_model(store, 2, TEXT, guild_id=GUILD_B, blob=blob)
    a, b = channel(1, GUILD_A), channel(2, GUILD_B)
    before = await _replies(service, 1, GUILD_A, 50)
    assert sum("cat" in reply.split() for reply in before) >= 45  # it does say it unfiltered

    with pytest.raises(NotAllowed):
        await service.add_filter(a, MEMBER, "cat")
    with pytest.raises(NotAllowed):
        await service.list_filters(a, MEMBER)
    added = await service.add_filter(a, ADMIN, "  CÂT ")
    assert (added.word, added.changed, added.count) == ("CÂT", True, 1)
    again = await service.add_filter(a, ADMIN, "cat")
    assert (again.changed, again.count) == (False, 1)
    assert [w.word for w in await service.list_filters(a, ADMIN)] == ["CÂT"]
    assert await service.list_filters(b, ADMIN) == []

    after = await _replies(service, 1, GUILD_A, 200)
    assert all("cat" not in reply.split() and len(reply.split()) == 24 for reply in after)
    other = await _replies(service, 2, GUILD_B, 50)  # guild B has no filter
    assert sum("cat" in reply.split() for reply in other) >= 45

    with pytest.raises(InvalidOption, match="filters"):
        await service.continue_story(a, "the Cat", ContinueOptions())
    await service.continue_story(b, "the Cat", ContinueOptions())

    removed = await service.remove_filter(a, ADMIN, "Cat")
    assert (removed.word, removed.count) == ("CÂT", 0)
    with pytest.raises(NotFound):
        await service.remove_filter(a, ADMIN, "cat")
    assert any("cat" in reply.split() for reply in await _replies(service, 1, GUILD_A, 5))


@pytest.mark.parametrize("word", ["", "   ", "...", "x" * 65, "a b c d e f g h i"])
async def test_bad_filter_words_are_refused(service: StoryService, word: str) -> None:
    with pytest.raises(InvalidOption):
        await service.add_filter(channel(1, GUILD_A), ADMIN, word)


async def test_filters_need_a_server_and_have_a_cap(tmp_path: Path, pool: TrainingPool) -> None:
    config = tiny_config(tmp_path, filters={"max_words": 2})
    store = await StoryStore.open(config.storage.database)
    service = StoryService(config, store, executor=pool)
    try:
        with pytest.raises(InvalidOption, match="server"):
            await service.add_filter(channel(1, None), ADMIN, "cat")
        await service.add_filter(channel(1, GUILD_A), ADMIN, "cat")
        await service.add_filter(channel(1, GUILD_A), ADMIN, "笨蛋")
        with pytest.raises(InvalidOption, match="limit"):
            await service.add_filter(channel(1, GUILD_A), ADMIN, "dog")
    finally:
        await service.close()
        await store.close()


async def _train(service: StoryService, text: str, channel_id: int) -> int:
    job = await service.train(
        channel(channel_id, GUILD_A), ADMIN, "s.txt", text.encode(), TrainOptions()
    )
    await service.cancel(channel(channel_id, GUILD_A), ADMIN)
    await service.wait_for_job(job.job_id)
    return job.filtered_words


async def test_story_with_filtered_words_is_masked_by_default(
    service: StoryService, store: StoryStore
) -> None:
    await service.add_filter(channel(5, GUILD_A), ADMIN, "Cat")
    await service.add_filter(channel(5, GUILD_A), ADMIN, "笨蛋")
    assert await _train(service, TEXT + " 大笨蛋跑了。", 5) == 4  # "cat" 3 times, 笨蛋 once
    (story,) = await store.list_stories(5)
    stored = tokenize((await store.story_texts([story.id]))[0])
    assert "cat" not in stored and "mice" in stored and "".join(stored).count("笨蛋") == 0
    assert "大" in stored and story.symbols == len(stored)
    assert await _train(service, "a dog and a bird and a fish .", 6) == 0


@pytest.fixture
async def refusing(
    config: Config, store: StoryStore, pool: TrainingPool
) -> AsyncIterator[StoryService]:
    """A service whose config refuses uploaded stories that hold a filtered word."""
    refusing = dataclasses.replace(
        config, filters=dataclasses.replace(config.filters, on_story="refuse")
    )
    service = StoryService(refusing, store, executor=pool)
    yield service
    await service.close()


async def test_story_with_filtered_words_is_refused_by_config(
    refusing: StoryService, store: StoryStore
) -> None:
    await refusing.add_filter(channel(7, GUILD_A), ADMIN, "cat")
    with pytest.raises(InvalidUpload, match=r"contains 3 words this server filters \(“cat”"):
        await refusing.train(channel(7, GUILD_A), ADMIN, "s.txt", STORY, TrainOptions())
    assert await store.list_stories(7) == []
    # Another server's filter does not apply.
    job = await refusing.train(channel(8, GUILD_B), ADMIN, "s.txt", STORY, TrainOptions())
    assert job.filtered_words == 0
    await refusing.cancel(channel(8, GUILD_B), ADMIN)
    await refusing.wait_for_job(job.job_id)


async def test_history_is_masked_even_where_uploads_are_refused(
    refusing: StoryService, store: StoryStore
) -> None:
    service, here = refusing, channel(9, GUILD_A)
    await service.set_history_learning(GUILD_A, ADMIN, True)
    await service.add_filter(here, ADMIN, "cat")
    await service.add_filter(here, ADMIN, "笨蛋")
    said = [
        "the mice feared the cat .",
        "Cat!",  # nothing left once masked: dropped
        "大笨蛋跑了。",
        "they met in council .",
    ]
    messages = [
        HistoryMessage(2000 + i, MEMBER.user_id, text, f"2026-03-0{1 + i}T12:00:00+00:00")
        for i, text in enumerate(said)
    ]
    learned = await service.train_history(here, ADMIN, messages, TrainOptions())
    assert learned.job.filtered_words == 3
    assert (learned.messages, learned.read, learned.skipped_empty) == (3, 4, 1)
    (story,) = await store.list_stories(9)
    stored = (await store.story_texts([story.id]))[0]
    assert "cat" not in stored.lower() and "笨蛋" not in stored
    assert "the mice feared the" in stored and "大" in stored and "council" in stored
    # What a member's data shows (and a retraining after /privacy forget reads) is masked.
    data = await service.member_data(MEMBER.user_id, GUILD_A)
    assert [m.text for _, m in data.messages] == [
        "the mice feared the .",
        "大跑了。",
        "they met in council .",
    ]
    await service.cancel(here, ADMIN)
    await service.wait_for_job(learned.job.job_id)
