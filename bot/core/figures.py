"""A channel's figures: the read-only queries behind ``/story stats``, ``/story list`` and
``/story versions``, with the values they return.

Adapters call them as ``service.figures.NAME(channel)``. A new read-only figures command is a
query and its value here, a renderer in the adapters and a command row or cog method: no other
core module changes (docs/architecture.md walks through one).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.api import ChannelRef, StoryInfo
from bot.core.job_records import figures_of
from bot.core.store import StoryStore


@dataclass(frozen=True)
class StoryStats:
    """A channel's figures (``/story stats``)."""

    stories: tuple[StoryInfo, ...]  # with their symbols
    vocabulary_size: int | None  # of the active model
    model_versions: tuple[int, ...]  # kept, newest first
    active_version: int | None
    trainings: int  # trainings that ended with a model
    replies: int  # continuations served


@dataclass(frozen=True)
class ModelVersion:
    version: int
    active: bool
    created_at: str
    story_ids: tuple[int, ...]
    learnable_accuracy: float | None
    epochs: int | None


class ChannelFigures:
    """Read-only queries of one channel's stories, versions and counters."""

    def __init__(self, store: StoryStore) -> None:
        self.store = store

    async def stats(self, channel: ChannelRef) -> StoryStats:
        """Symbols per story, vocabulary, kept versions, trainings run and replies served."""
        models = await self.store.list_models(channel.channel_id)
        active = next((m for m in models if m.active), None)
        counters = await self.store.channel_counters(channel.channel_id)
        return StoryStats(
            stories=tuple(await self.stories(channel)),
            vocabulary_size=None if active is None else active.vocabulary_size,
            model_versions=tuple(m.version for m in models),
            active_version=None if active is None else active.version,
            trainings=counters.trainings,
            replies=counters.replies,
        )

    async def stories(self, channel: ChannelRef) -> list[StoryInfo]:
        """The channel's kept stories, oldest first."""
        return [
            StoryInfo(s.id, s.filename, s.uploader_id, s.uploader_name, s.symbols, s.created_at)
            for s in await self.store.list_stories(channel.channel_id)
        ]

    async def versions(self, channel: ChannelRef) -> list[ModelVersion]:
        """The channel's kept model versions, newest first."""
        versions = []
        for model in await self.store.list_models(channel.channel_id):
            figures = figures_of(model.figures, model.id)
            versions.append(
                ModelVersion(
                    version=model.version,
                    active=model.active,
                    created_at=model.created_at,
                    story_ids=model.story_ids,
                    learnable_accuracy=None if figures is None else figures.learnable_accuracy,
                    epochs=None if figures is None else figures.epochs,
                )
            )
        return versions
