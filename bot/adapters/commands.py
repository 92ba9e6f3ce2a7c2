"""The adapters' shared command table and the text commands it names.

A query command (read-only, answered with text) is one ``Query`` row: the console offers it as
``/story NAME`` (``/NAME`` for the short forms), the CLI as ``python -m bot CLI_NAME``, both
with the same help and the same renderer. Discord's cogs render the same values as embeds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.adapters.text import retrain_reason_text, stats_text
from bot.core.api import ChannelRef, Member, console_channel
from bot.display import count_text, known, vocabulary_text

if TYPE_CHECKING:
    from bot.core.service import StoryService

CONSOLE_MEMBER = Member(user_id=0, display_name="console", is_admin=True)


def resolve_channel(channel: str | ChannelRef) -> ChannelRef:
    """A console channel by name, or a channel given by id (``--channel-id``)."""
    return console_channel(channel) if isinstance(channel, str) else channel


def channel_label(channel: str | ChannelRef) -> str:
    if isinstance(channel, str):
        return channel
    return channel.name or f"<#{channel.channel_id}>"


async def status_text(service: StoryService, channel_name: str | ChannelRef) -> str:
    card = await service.story_card(resolve_channel(channel_name))
    lines = [f"Channel {channel_label(channel_name)}:"]
    if card.has_model:
        lines.append(
            f"  model version {card.model_version}, trained {card.trained_at} on "
            f"{card.story_filename} ({card.stories} stor{'y' if card.stories == 1 else 'ies'})"
        )
        vocabulary = vocabulary_text(
            card.vocabulary_size, card.vocabulary_cap, card.vocabulary_covered_share
        )
        lines.append(
            f"  {card.symbols} symbols, vocabulary {vocabulary}, "
            f"{count_text(card.epochs or 0, 'epoch')} in {card.training_seconds or 0:.1f} s"
        )
        if known(card.learnable_accuracy):
            lines.append(f"  accuracy on learnable windows {card.learnable_accuracy:.1%}")
        if known(card.val_accuracy):
            lines.append(
                f"  held-out accuracy {card.val_accuracy:.1%}, perplexity {card.val_perplexity:.1f}"
            )
    else:
        lines.append("  no trained model yet")
    if card.job is not None:
        lines.append(
            f"  training job #{card.job.job_id}: {card.job.state}, "
            f"epoch {card.job.epoch}/{card.job.max_epochs}"
        )
    if card.notice is not None:
        lines.append(f"  {retrain_reason_text(card.notice)}")
    if card.last_job is not None and card.last_job.state != "done":
        lines.append(f"  last training {card.last_job.state}: {card.last_job.error}")
    return "\n".join(lines)


async def stories_text(service: StoryService, channel_name: str | ChannelRef) -> str:
    stories = await service.list_stories(resolve_channel(channel_name))
    if not stories:
        return f"Channel {channel_label(channel_name)} has no stories."
    return "\n".join(
        f"  #{story.story_id} {story.filename} by {story.uploader_name}, "
        f"{story.symbols} symbols, {story.created_at}"
        for story in stories
    )


async def versions_text(service: StoryService, channel_name: str | ChannelRef) -> str:
    versions = await service.list_versions(resolve_channel(channel_name))
    if not versions:
        return f"Channel {channel_label(channel_name)} has no model versions."
    lines = []
    for version in versions:
        mark = "*" if version.active else " "
        accuracy = (
            ""
            if version.learnable_accuracy is None
            else f", accuracy {version.learnable_accuracy:.1%}"
        )
        stories = ", ".join(f"#{i}" for i in version.story_ids)
        lines.append(f" {mark}v{version.version} {version.created_at}, stories {stories}{accuracy}")
    return "\n".join(lines)


async def story_stats_text(service: StoryService, channel_name: str | ChannelRef) -> str:
    stats = await service.story_stats(resolve_channel(channel_name))
    lines = stats_text(stats).splitlines()
    return "\n".join([f"Channel {channel_label(channel_name)}:", *(f"  {line}" for line in lines)])


Render = Callable[["StoryService", "str | ChannelRef"], Awaitable[str]]


@dataclass(frozen=True)
class Query:
    console_name: str  # /story NAME in the console
    cli_name: str  # python -m bot NAME
    help: str
    render: Render


QUERIES: tuple[Query, ...] = (
    Query("show", "status", "show the channel's story card", status_text),
    Query("list", "stories", "list the channel's stories", stories_text),
    Query("versions", "versions", "list the kept model versions", versions_text),
    Query(
        "stats",
        "stats",
        "the channel's figures: symbols per story, vocabulary, versions, trainings, replies",
        story_stats_text,
    ),
)
BY_CONSOLE_NAME = {query.console_name: query for query in QUERIES}
BY_CLI_NAME = {query.cli_name: query for query in QUERIES}
