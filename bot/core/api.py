"""The values the adapters see: requests, answers and the facade's type.

Adapters (Discord, console, CLI) import from here and ``bot.core.service`` only. Values carry
facts, never English for people: the adapters' renderers word them.

Console/CLI channels: ``console_channel(name)`` maps a channel name to a stable id (the first 6
bytes of SHA-256 of ``console:<name>``, so below 2**47, far below any real Discord snowflake from
after 2015) with ``guild_id=None``; the name is stored with the channel.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from bot.core.shard_plan import OpenTraining as OpenTraining
from bot.core.shard_plan import ShardChange as ShardChange
from bot.core.shard_plan import ShardPlan as ShardPlan
from bot.core.store import HistorySpan, JobState, StoryMessage
from model import TrainingFigures, UnknownWord
from model.config import MAX_N_INPUT

__all__ = [
    "MAX_N_INPUT",
    "MAX_SEED",
    "CacheStats",
    "ChannelRef",
    "Continuation",
    "ContinueOptions",
    "DataDeletion",
    "EndedJob",
    "FilterChange",
    "FilteredWord",
    "HistoryMessage",
    "HistoryRequest",
    "HistorySpan",
    "HistoryTraining",
    "ImportResult",
    "JobProgress",
    "JobResult",
    "JobState",
    "Member",
    "MemberData",
    "ProgressCallback",
    "RetrainReason",
    "RetrainingListener",
    "StoryCard",
    "StoryInfo",
    "StoryMessage",
    "StoryRemoval",
    "TrainOptions",
    "TrainingFigures",
    "TrainingJob",
    "UnknownWord",
    "console_channel",
]

MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class ChannelRef:
    guild_id: int | None
    channel_id: int
    name: str | None = None  # stored for display (console channels, Discord channel names)


@dataclass(frozen=True)
class Member:
    user_id: int
    display_name: str
    is_admin: bool  # may train, forget, remove stories, roll back, cancel others' jobs


@dataclass(frozen=True)
class TrainOptions:
    layers: int | None = None
    n_input: int | None = None
    seed: int | None = None
    max_seconds: float | None = None
    mode: Literal["replace", "append"] = "replace"


@dataclass(frozen=True)
class ContinueOptions:
    length: int | None = None
    temperature: float | None = None  # None: the replies' default, sampled (REPLY_TEMPERATURE)
    seed: int | None = None
    top_k: int | None = None


@dataclass(frozen=True)
class RetrainReason:
    """Why the bot queued a training itself: a story was removed from under the model."""

    removed_story_id: int
    filename: str
    member_data: bool = False  # a member's data was deleted (/privacy forget) from the story


@dataclass(frozen=True)
class JobProgress:
    job_id: int
    state: str  # a JobState, or "cancelling" while a cancel reaches the trainer
    epoch: int
    max_epochs: int
    loss: float | None
    accuracy: float | None
    learnable_accuracy: float | None
    eta_seconds: float | None
    elapsed_seconds: float
    queue_position: int | None
    val_accuracy: float | None = None
    error: str | None = None
    reason: RetrainReason | None = None  # why the bot queued it itself
    # The epoch count the training is expected to end at (the plateau stop, predicted from the
    # held-out loss); None while unknown or not estimated (no held-out split): eta_seconds is
    # then an upper bound (the epoch limit or the time budget), or None.
    expected_epochs: float | None = None


@dataclass(frozen=True)
class TrainingJob:
    job_id: int
    channel: ChannelRef
    state: str
    queue_position: int | None
    story_id: int | None
    story_ids: tuple[int, ...]
    requested_by: int | None
    filtered_words: int = 0  # cut out of the story by the server's word filters


@dataclass(frozen=True)
class FilteredWord:
    """One filtered word of a server, as ``/filter list`` shows it."""

    word: str
    added_by: int | None
    created_at: str


@dataclass(frozen=True)
class FilterChange:
    """The answer to ``/filter add`` and ``/filter remove``."""

    word: str
    changed: bool  # False: it was already filtered (add)
    count: int  # the server's filtered words now


@dataclass(frozen=True)
class JobResult:
    job_id: int
    state: str  # done | failed | cancelled | interrupted
    error: str | None
    model_version: int | None
    figures: TrainingFigures | None
    imported: bool = False  # the "job" was an import of an export file, not a training


@dataclass(frozen=True)
class EndedJob:
    """An ended job and what its progress message should now show."""

    channel: ChannelRef
    filename: str | None  # of the job's (last) story; None if it was removed since
    result: JobResult
    # the progress message an adapter recorded and has not yet updated, and its channel
    message_id: int | None
    message_channel_id: int | None


@dataclass(frozen=True)
class Continuation:
    """A reply: ``text`` is the prompt as given followed by the continuation, which went on
    from the prompt's known words; ``unknown_words`` are the words it did not know (with
    suggestions) in the part of the prompt the model read."""

    prompt_symbols: list[str]
    symbols: list[str]
    text: str
    model_version: int
    original_share: float | None  # generated 4-grams found verbatim in the model's stories
    unknown_words: tuple[UnknownWord, ...] = ()


@dataclass(frozen=True)
class StoryCard:
    channel: ChannelRef
    has_model: bool
    model_version: int | None
    story_filename: str | None
    story_uploader: str | None
    story_uploaded_at: str | None
    stories: int  # stories the active model learned
    symbols: int | None
    vocabulary_size: int | None
    vocabulary_covered_share: float | None
    learnable_accuracy: float | None
    accuracy: float | None
    val_accuracy: float | None
    val_perplexity: float | None
    epochs: int | None
    training_seconds: float | None
    trained_at: str | None
    job: JobProgress | None  # queued or running training
    last_job: JobResult | None  # the latest finished job (to show a failure)
    notice: RetrainReason | None = None  # why the open job was queued by the bot
    vocabulary_cap: int | None = None  # training.vocabulary_max_size when the model was trained
    history: HistorySpan | None = None  # the latest story was learned from the channel's history


@dataclass(frozen=True)
class StoryInfo:
    story_id: int
    filename: str
    uploader_id: int | None
    uploader_name: str | None
    symbols: int
    created_at: str


@dataclass(frozen=True)
class StoryRemoval:
    story_id: int
    filename: str
    deleted_versions: tuple[int, ...]  # every model version trained on the story
    active_version: int | None  # the version answering now (an older kept one), or None
    retraining: TrainingJob | None  # queued on the remaining stories, or None


@dataclass(frozen=True)
class ImportResult:
    job_id: int
    model_version: int
    story_ids: tuple[int, ...]
    source_channel: str | None
    exported_at: str
    figures: TrainingFigures


@dataclass(frozen=True)
class CacheStats:
    """The model cache now: ``models`` cached taking ``bytes`` (see ``model_cache``)."""

    models: int
    bytes: int
    max_models: int
    max_bytes: int
    channels: tuple[int, ...] = ()  # the cached channels' ids, least recently used first


@dataclass(frozen=True)
class HistoryMessage:
    """A channel message as an adapter read it, before the core selects and cleans it."""

    message_id: int
    author_id: int
    content: str
    created_at: str  # ISO 8601 UTC
    author_is_bot: bool = False
    webhook: bool = False
    # Written by the platform, not by its author: a member joined, a thread was created, a
    # message was pinned... (its content is not kept)
    system: bool = False


@dataclass(frozen=True)
class HistoryRequest:
    """What an adapter may read for ``train_history`` (every check passed)."""

    limit: int  # read at most this many messages, newest first
    opted_out: frozenset[int]  # skip these authors while reading


@dataclass(frozen=True)
class HistoryTraining:
    job: TrainingJob
    messages: int  # messages learned
    read: int  # messages read: the learned ones and every one left out, counted below
    skipped_system: int
    skipped_bots: int
    skipped_commands: int
    skipped_opted_out: int
    skipped_empty: int
    span: HistorySpan


@dataclass(frozen=True)
class MemberData:
    """Everything fabulist keeps of a member (in one server, or everywhere)."""

    user_id: int
    guild_id: int | None
    opted_out: bool  # in ``guild_id`` (or in any server when None)
    uploads: tuple[tuple[StoryInfo, str], ...]  # stories they uploaded, with the text
    messages: tuple[tuple[StoryInfo, StoryMessage], ...]  # their messages in history stories


@dataclass(frozen=True)
class DataDeletion:
    """What ``delete_user_data`` did."""

    user_id: int
    guild_id: int | None
    channels: int  # channels that held their data
    removed_stories: int  # their uploads, and history stories left empty
    rewritten_stories: int  # history stories rebuilt without their messages
    deleted_versions: int  # model versions trained on those stories
    retrainings: tuple[TrainingJob, ...]


ProgressCallback = Callable[[JobProgress], Awaitable[None] | None]
# Told when the bot queues a retraining itself (channel, job id, why); may return a callback
# for the job's progress (see ``StoryService.on_retraining``).
RetrainingListener = Callable[[ChannelRef, int, RetrainReason], ProgressCallback | None]


def console_channel(name: str) -> ChannelRef:
    """A stable channel for the CLI/console (see the module docstring)."""
    digest = hashlib.sha256(f"console:{name}".encode()).digest()
    return ChannelRef(guild_id=None, channel_id=int.from_bytes(digest[:6], "big") >> 1, name=name)
