"""Words a channel's story never uses (issue 23): the reply continues from the prompt's known
words and names the others with suggestions; filters and limits still refuse first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.text import continuation_text
from bot.core.api import ContinueOptions, UnknownWord
from bot.core.service import StoryService
from bot.discord_adapter.cogs.continuation import render_reply
from bot.discord_adapter.rendering import message_story_text
from bot.errors import InvalidOption
from model import detokenize
from tests.service.conftest import ADMIN, MEMBER, article_service, channel

OPTIONS = ContinueOptions(length=8, temperature=0.0)  # greedy: one possible reply


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[StoryService]:
    """A service over a seeded model of the article (numpy weights: no training runs)."""
    async with article_service(tmp_path, [1]) as opened:
        yield opened


async def test_unknown_words_are_left_out_and_named(service: StoryService) -> None:
    known = await service.continue_story(channel(1), "the mice had a general", OPTIONS)
    reply = await service.continue_story(
        channel(1), "the mice had a generel zebra general", OPTIONS, member=MEMBER
    )
    # The network read "the mice had a general" (the last known words), so the same reply.
    assert reply.symbols == known.symbols and len(reply.symbols) == 8
    # The member's words are shown as given, then the continuation.
    prompt = ["the", "mice", "had", "a", "generel", "zebra", "general"]
    assert reply.prompt_symbols == prompt
    assert reply.text == detokenize([*prompt, *reply.symbols])
    generel, zebra = reply.unknown_words
    assert generel.word == "generel" and "general" in generel.suggestions
    assert zebra == UnknownWord("zebra", ())
    assert known.unknown_words == ()


async def test_a_prompt_with_no_known_word_continues_the_story(service: StoryService) -> None:
    reply = await service.continue_story(channel(1), "hate mondays", OPTIONS)
    assert len(reply.symbols) == 8
    assert reply.text.startswith("hate mondays ")
    assert [u.word for u in reply.unknown_words] == ["hate", "mondays"]


async def test_filters_and_limits_still_refuse_unknown_words(service: StoryService) -> None:
    await service.add_filter(channel(1), ADMIN, "zebra")
    with pytest.raises(InvalidOption, match="filters"):
        await service.continue_story(channel(1), "had a zebra", OPTIONS)
    with pytest.raises(InvalidOption, match="limit"):
        await service.continue_story(channel(1), "walrus " * 40, OPTIONS)


async def test_the_note_is_shown_by_every_adapter(service: StoryService) -> None:
    reply = await service.continue_story(channel(1), "the mice had a generel", OPTIONS)
    console = continuation_text(reply)
    assert console.startswith("The mice had a generel ")
    assert console.endswith("\n(I didn't know 'generel': did you mean 'general'?)"), console
    discord = "\n".join(render_reply(reply))
    lines = discord.split("\n")
    assert lines[0].startswith("The mice had a generel ")
    assert lines[-2] == "-# I didn't know 'generel': did you mean 'general'?", discord
    assert lines[-1].startswith("-# model v1")
    # "Continue this" on the reply reads the story words only, not the note.
    assert message_story_text(discord, own=True) == lines[0]
