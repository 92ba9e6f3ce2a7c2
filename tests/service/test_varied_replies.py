"""Replies at the defaults vary (issue 23): sampled with a seed drawn per request, and steered
away from the channel's own recent replies; greedy and seeded replies stay reproducible; each
channel remembers only its own replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.text import continuation_text as console_text
from bot.core.api import Continuation, ContinueOptions
from bot.core.recent_replies import RecentReplies
from bot.core.service import StoryService
from bot.core.validation import RequestChecks
from bot.discord_adapter.cogs.continuation import render_reply
from model import detokenize
from model.generation import REPLY_TEMPERATURE
from tests.service.conftest import article_service, channel, tiny_config

PROMPTS = ("the mice", "a young mouse", "the cat", "who is to", "some said this", "nobody spoke")


def four_grams(symbols: list[str]) -> set[tuple[str, ...]]:
    return {tuple(symbols[i : i + 4]) for i in range(len(symbols) - 3)}


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[StoryService]:
    """Channels 1 and 2 with the same seeded model of the article (numpy weights)."""
    async with article_service(tmp_path, [1, 2]) as opened:
        yield opened


async def test_different_prompts_get_different_replies_at_the_defaults(
    service: StoryService,
) -> None:
    replies = [
        (await service.continue_story(channel(1), prompt, ContinueOptions())).symbols
        for prompt in PROMPTS
    ]
    for index, reply in enumerate(replies):
        others = set().union(*(four_grams(r) for i, r in enumerate(replies) if i != index))
        assert len(reply) == 32 and not four_grams(reply) & others, (index, replies)


async def test_the_same_prompt_again_gets_a_new_reply(service: StoryService) -> None:
    first = (await service.continue_story(channel(1), "the mice", ContinueOptions())).symbols
    again = (await service.continue_story(channel(1), "the mice", ContinueOptions())).symbols
    assert not four_grams(again) & four_grams(first), (first, again)


async def test_greedy_and_seeded_replies_are_reproducible(service: StoryService) -> None:
    for options in (ContinueOptions(temperature=0.0), ContinueOptions(seed=7)):
        first = await service.continue_story(channel(1), "the mice", options)
        again = await service.continue_story(channel(1), "the mice", options)
        elsewhere = await service.continue_story(channel(2), "the mice", options)
        assert first.symbols == again.symbols == elsewhere.symbols, options


async def test_each_channel_remembers_only_its_own_replies(service: StoryService) -> None:
    said = await service.continue_story(channel(1), "the mice", ContinueOptions())
    recent = service.storyteller.recent
    assert recent.of(1, said.model_version) == [tuple(said.symbols)]
    assert recent.of(2, said.model_version) == []
    other = await service.continue_story(channel(2), "the mice", ContinueOptions())
    assert recent.of(2, other.model_version) == [tuple(other.symbols)]
    assert recent.of(1, said.model_version) == [tuple(said.symbols)]


def test_recent_replies_are_bounded_and_end_with_the_model_version() -> None:
    recent = RecentReplies(replies=2, channels=2)
    for n in range(3):
        recent.add(1, 1, [f"w{n}"])
    assert recent.of(1, 1) == [("w1",), ("w2",)]
    assert recent.of(1, 2) == []  # another model version: nothing said yet
    recent.add(1, 2, ["new"])
    assert recent.of(1, 2) == [("new",)] and recent.of(1, 1) == []
    recent.add(2, 1, ["b"])
    recent.add(3, 1, ["c"])  # a third channel: the one answered longest ago is dropped
    assert recent.of(1, 2) == [] and recent.of(2, 1) == [("b",)] and recent.of(3, 1) == [("c",)]


def test_the_default_samples_within_the_servers_temperature_limit(tmp_path: Path) -> None:
    checks = RequestChecks(tiny_config(tmp_path))
    default = checks.continue_options(ContinueOptions())
    assert (default.temperature, default.seed) == (REPLY_TEMPERATURE, None)
    assert checks.continue_options(ContinueOptions(temperature=0.0)).temperature == 0.0
    capped = RequestChecks(tiny_config(tmp_path, limits={"max_temperature": 0.5}))
    assert capped.continue_options(ContinueOptions()).temperature == 0.5


def test_a_reply_of_messages_shows_a_line_a_message() -> None:
    prompt, reply = ["how", "are", "you"], ["?", "\n", "good", ",", "you", "?", "\n", "fine"]
    continuation = Continuation(
        prompt_symbols=prompt,
        symbols=reply,
        text=detokenize([*prompt, *reply]),
        model_version=1,
        original_share=1.0,
    )
    [discord_text] = render_reply(continuation, "")
    assert discord_text.split("\n")[:3] == ["How are you?", "Good, you?", "Fine"]
    assert console_text(continuation).split("\n") == [
        "How are you?",
        "Good, you?",
        "Fine  [100% from the story]",
    ]
