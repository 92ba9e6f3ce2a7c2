"""The store protocol: what the core needs from a database (stories, jobs, models).

Database-neutral: plain dataclass records in and out, ``StorageError`` (``StorageUnavailable``
when the database refuses writes) for failures; no driver types, error codes or SQL. The SQLite
implementation is ``bot.store.sqlite.SqliteStoryStore``; a second backend implements the same
methods (``tests/service/test_storage.py`` is the contract's test suite).

Every method that changes more than one row is one transaction: a crash leaves either all of
it or none. Policy (which model answers after a removal, what to retrain) is the core's: the
store applies a :class:`RemovalPlan` the core computes from :class:`RemovalFacts` inside the
removal's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from bot.core.shard_plan import OpenTraining as OpenTraining
from bot.core.shard_plan import PlanRead as PlanRead
from bot.core.shard_plan import ShardPlan as ShardPlan
from bot.core.shard_plan import ShardPlans


def now_iso() -> str:
    """Timestamps are ISO 8601 UTC strings, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class JobState(StrEnum):
    """A training job's life: queued -> running -> one of the final states."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def open(self) -> bool:
        return self in (JobState.QUEUED, JobState.RUNNING)


FINAL_STATES = (JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED)


@dataclass(frozen=True)
class ChannelRecord:
    channel_id: int
    guild_id: int | None
    name: str | None
    active_model_id: int | None
    created_at: str


@dataclass(frozen=True)
class StoryMessage:
    """One channel message of a story learned from history, as learned (already cleaned)."""

    message_id: int
    author_id: int
    text: str
    created_at: str


@dataclass(frozen=True)
class NewStory:
    filename: str
    uploader_id: int | None
    uploader_name: str | None
    text: str
    sha256: str
    encoding: str
    bytes: int
    symbols: int
    vocabulary_size: int
    # a story learned from channel history: its messages, whose texts joined are ``text``
    messages: tuple[StoryMessage, ...] = ()


@dataclass(frozen=True)
class StoryRecord:
    id: int
    channel_id: int
    filename: str
    uploader_id: int | None
    uploader_name: str | None
    sha256: str
    encoding: str
    bytes: int
    symbols: int
    vocabulary_size: int
    created_at: str


@dataclass(frozen=True)
class ModelRecord:
    id: int
    channel_id: int
    version: int
    config: dict[str, Any]
    vocabulary_size: int
    figures: dict[str, Any]
    options: dict[str, Any]
    job_id: int | None
    created_at: str
    story_ids: tuple[int, ...]
    active: bool


@dataclass(frozen=True)
class NewModel:
    """A completely trained model to store (``activate_model``, ``import_channel``)."""

    config: dict[str, Any]  # ModelConfig JSON
    vocabulary: Sequence[str]
    blob: bytes  # model.serialization.to_bytes()
    figures: dict[str, Any]  # TrainingFigures JSON
    options: dict[str, Any]  # the job's options


@dataclass(frozen=True)
class ImportedStory:
    story: NewStory
    created_at: str


@dataclass(frozen=True)
class ChannelSnapshot:
    """A channel's active model with its blob and all its stories' texts, read at one instant."""

    channel: ChannelRecord
    model: ModelRecord
    blob: bytes
    stories: tuple[tuple[StoryRecord, str], ...]


@dataclass(frozen=True)
class JobRecord:
    id: int
    channel_id: int
    guild_id: int | None
    requested_by: int | None
    requested_by_name: str | None
    state: JobState
    story_ids: tuple[int, ...]
    options: dict[str, Any]
    progress: dict[str, Any] | None
    error: str | None
    model_id: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    # the message showing the job's progress, until the adapter has shown the job's end there
    progress_channel_id: int | None = None
    progress_message_id: int | None = None


@dataclass(frozen=True)
class RemovalFacts:
    """What a story's removal finds, read inside its transaction (for the core's policy)."""

    story: StoryRecord
    active: ModelRecord | None  # the active model before the removal
    deleted_versions: tuple[int, ...]  # versions trained on the story (they go with it)
    remaining_versions: tuple[int, ...]  # the channel's other kept versions, newest first
    remaining_story_ids: tuple[int, ...]  # the channel's other stories, oldest first
    # the stories that go (a member's data deletion may remove several, or none and rewrite
    # ``story``); None: ``story`` alone
    removed_story_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class RemovalPlan:
    """The core's answer to :class:`RemovalFacts`: what answers afterwards, what to retrain."""

    activate_version: int | None  # a remaining version to make active; None: leave as is
    retrain_story_ids: tuple[int, ...]  # () queues nothing
    retrain_options: dict[str, Any]


RemovalPolicy = Callable[[RemovalFacts], RemovalPlan]


@dataclass(frozen=True)
class StoryDeletion:
    """What ``delete_story`` did, in its one transaction."""

    story: StoryRecord
    deleted_versions: tuple[int, ...]  # model versions trained on the story, now deleted
    active_version: int | None  # the version active afterwards (an older one kept), or None
    retrain_job: JobRecord | None  # queued on the remaining stories, or None


@dataclass(frozen=True)
class HistorySpan:
    """What a story learned from channel history holds now: its messages and their dates."""

    messages: int
    first_at: str
    last_at: str


@dataclass(frozen=True)
class RebuiltStory:
    """A history story's text rebuilt from its remaining messages (the core tokenizes)."""

    text: str
    sha256: str
    bytes: int
    symbols: int
    vocabulary_size: int


# The core's rebuild of a history story from its remaining messages' texts; None: too little
# is left to learn, the story goes.
StoryRebuild = Callable[[Sequence[str]], RebuiltStory | None]


@dataclass(frozen=True)
class UserRecords:
    """Everything of one member the store keeps (``user_records``), for ``/privacy mydata``."""

    uploads: tuple[tuple[StoryRecord, str], ...]  # stories they uploaded, with the text
    messages: tuple[tuple[StoryRecord, StoryMessage], ...]  # their messages in history stories
    opted_out_guilds: tuple[int, ...]


@dataclass(frozen=True)
class UserDataDeletion:
    """What ``delete_user_data`` did in one channel (all channels in one transaction)."""

    channel_id: int
    guild_id: int | None
    channel_name: str | None
    removed_story_ids: tuple[int, ...]  # their uploads, and history stories left empty
    rewritten_story_ids: tuple[int, ...]  # history stories rebuilt without their messages
    deleted_versions: tuple[int, ...]  # model versions trained on any of those stories
    active_version: int | None
    retrain_job: JobRecord | None


@dataclass(frozen=True)
class ChannelCounters:
    """Running totals of a channel (``/story stats``)."""

    trainings: int  # jobs that ended with a new model (trainings and imports)
    replies: int  # continuations served


@dataclass(frozen=True)
class FilterRecord:
    """One filtered word of a server (``/filter``)."""

    guild_id: int
    folded: str  # the case- and accent-insensitive key, unique per server
    word: str  # as the admin typed it
    added_by: int | None
    created_at: str


class StoryStore(ShardPlans, Protocol):
    """The core's database. One instance per process; safe to call from one event loop.

    With ``ShardPlans``: the cluster's shard plan (``bot.core.shard_plan``).

    ``owner`` names this open store in job rows (``bot.owner``): jobs whose owner process is
    gone are ``orphaned_jobs``.
    """

    owner: str
    read_only: bool  # opened for reading only (every write raises StorageUnavailable)

    async def close(self) -> None: ...

    # -- channels -------------------------------------------------------------------------------

    async def forget_channel(self, channel_id: int) -> bool:
        """Delete the channel with its stories, models and jobs. True if it existed."""
        ...

    async def channel_counters(self, channel_id: int) -> ChannelCounters: ...

    # -- consent (per server) -------------------------------------------------------------------

    async def set_opted_out(self, guild_id: int, user_id: int, opted_out: bool) -> None: ...

    async def opted_out(self, guild_id: int) -> frozenset[int]:
        """The server's members who opted out of being learned from."""
        ...

    async def set_history_enabled(self, guild_id: int, enabled: bool, by: int | None) -> None: ...

    async def history_enabled(self, guild_id: int) -> bool: ...

    async def user_records(self, user_id: int, guild_id: int | None) -> UserRecords:
        """The member's uploads and history messages (in one server, or all with None)."""
        ...

    async def user_channels(self, user_id: int, guild_id: int | None) -> list[int]:
        """Channels holding an upload or a history message of the member."""
        ...

    async def delete_user_data(
        self,
        user_id: int,
        guild_id: int | None,
        *,
        policy: RemovalPolicy,
        rebuild: StoryRebuild,
        cancel_message: str,
    ) -> list[UserDataDeletion]:
        """In one transaction: end the open jobs of the affected channels as cancelled with
        ``cancel_message`` (another process's trainings: the caller cancels its own first; their
        owners see it with ``still_open``, and ``activate_model`` refuses them), delete the
        member's uploads and their messages in history stories (rebuilding those stories with
        ``rebuild``), every model version trained on an affected story, then apply ``policy``
        per channel as ``delete_story`` does; their name and id go from the remaining rows (jobs,
        uploaders, the server setting). Their opt-outs stay. The text must not linger in the
        database's files."""
        ...

    async def count_reply(self, channel_id: int) -> None:
        """Add one to the channel's replies served (no-op for an unknown channel)."""
        ...

    # -- word filters (per server) --------------------------------------------------------------

    async def guild_filters(self, guild_id: int) -> list[FilterRecord]:
        """The server's filtered words, oldest first."""
        ...

    async def filters_version(self, guild_id: int) -> int:
        """A number that grows with each change of the server's filters, whichever process
        made it (0 before the first): a cache of the words is good while it stays the same."""
        ...

    async def add_guild_filter(
        self, guild_id: int, folded: str, word: str, added_by: int | None
    ) -> bool:
        """Add a filtered word; False (nothing changed) if ``folded`` is already there."""
        ...

    async def remove_guild_filter(self, guild_id: int, folded: str) -> FilterRecord | None:
        """Remove a filtered word by its key; the removed record, or None if absent."""
        ...

    # -- stories --------------------------------------------------------------------------------

    async def add_story_and_job(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        channel_name: str | None,
        story: NewStory,
        append: bool,
        requested_by: int | None,
        requested_by_name: str | None,
        options: dict[str, Any],
    ) -> JobRecord:
        """Store a story and queue its job (on all the channel's stories if ``append``)."""
        ...

    async def list_stories(self, channel_id: int) -> list[StoryRecord]: ...

    async def story(self, channel_id: int, story_id: int) -> StoryRecord | None: ...

    async def story_texts(self, story_ids: Sequence[int]) -> list[str]:
        """Texts in the given order; StorageError if one is missing."""
        ...

    async def history_spans(self, story_ids: Sequence[int]) -> dict[int, HistorySpan]:
        """The given stories that were learned from history, with their messages' span."""
        ...

    async def delete_story(
        self,
        channel_id: int,
        story_id: int,
        *,
        guild_id: int | None,
        policy: RemovalPolicy,
        requested_by: int | None,
        requested_by_name: str | None,
    ) -> StoryDeletion | None:
        """Remove a story and the models trained on it, then apply ``policy``'s plan (activate
        a remaining version, queue a retraining), in one transaction. The story's text must not
        linger in the database's files. None if the channel has no such story."""
        ...

    async def snapshot(self, channel_id: int) -> ChannelSnapshot | None:
        """The active model, its blob and every story with its text (None without a model)."""
        ...

    async def import_channel(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        channel_name: str | None,
        stories: Sequence[ImportedStory],
        model_story_positions: Sequence[int],
        model: NewModel,
        requested_by: int | None,
        requested_by_name: str | None,
        max_stories: int,
        keep_versions: int,
    ) -> tuple[JobRecord, ModelRecord, tuple[int, ...]]:
        """Add stories and make their model the active new version, recorded as a done job."""
        ...

    # -- jobs -----------------------------------------------------------------------------------

    async def job(self, job_id: int) -> JobRecord | None: ...

    async def jobs(self, channel_id: int, limit: int = 20) -> list[JobRecord]:
        """The channel's latest jobs, newest first."""
        ...

    async def start_job(self, job_id: int) -> None:
        """queued -> running."""
        ...

    async def update_job_progress(self, job_id: int, progress: dict[str, Any]) -> None: ...

    async def finish_job(self, job_id: int, state: JobState, error: str | None = None) -> None:
        """An open job's final state other than done (``activate_model`` records done)."""
        ...

    async def still_open(self, job_ids: Sequence[int]) -> set[int]:
        """Those of ``job_ids`` that are still queued or running in the store: a job missing
        here was ended (or its channel forgotten) by another process."""
        ...

    async def orphaned_jobs(self) -> list[JobRecord]:
        """Open jobs whose owner process is gone (``bot.owner``), oldest first."""
        ...

    async def set_progress_message(self, job_id: int, channel_id: int, message_id: int) -> None: ...

    async def clear_progress_message(self, job_id: int) -> None: ...

    async def stale_progress_messages(self) -> list[JobRecord]:
        """Ended jobs whose progress message was never updated to show the end."""
        ...

    # -- models ---------------------------------------------------------------------------------

    async def activate_model(
        self,
        *,
        job_id: int,
        channel_id: int,
        model: NewModel,
        story_ids: Sequence[int],
        keep_versions: int,
    ) -> ModelRecord:
        """Insert the next version, make it active, mark the job done and prune old versions
        (and the stories no kept version or open job needs), in one transaction. StorageError
        (nothing changed) if the channel or one of the stories is gone, or the job is no longer
        open (another process ended it: a member's data was deleted)."""
        ...

    async def active_model(self, channel_id: int) -> ModelRecord | None: ...

    async def active_model_id(self, channel_id: int) -> int | None: ...

    async def model(self, model_id: int) -> ModelRecord | None: ...

    async def model_blob(self, model_id: int) -> bytes | None: ...

    async def list_models(self, channel_id: int) -> list[ModelRecord]:
        """The channel's kept versions, newest first."""
        ...

    async def set_active_version(self, channel_id: int, version: int) -> ModelRecord | None:
        """Make a kept version active; None if it is not kept."""
        ...
