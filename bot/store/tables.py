"""The store's tables at the head of the schema chain, once for both dialects (SQLAlchemy Core).

What the database holds, in Python: Alembic's target (``bot.store.schema``: a new revision must
leave both dialects matching this, which ``tests/service/test_schema_upgrade.py`` checks with
Alembic's ``compare_metadata``) and a reader's map of the columns. Types are the neutral ones:
an integer is ``INTEGER`` on SQLite and ``BIGINT`` on PostgreSQL (Discord ids do not fit 32
bits), a JSON list is ``TEXT`` on SQLite and ``json`` on PostgreSQL; times are ISO 8601 UTC text.
The ``model_info`` view (a model without its blob) is each dialect's own SQL (its JSON functions
differ): see the legacy files.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeEngine

metadata = MetaData()
# Rows of the running processes only, on PostgreSQL (one SQLite file is one host's).
POSTGRES_ONLY = "postgresql"


def _id() -> TypeEngine[int]:
    return BigInteger().with_variant(Integer(), "sqlite")


def _json() -> TypeEngine[Any]:
    return Text().with_variant(JSON(), "postgresql")


def _channel() -> Column[int]:
    """A row's channel: deleting the channel deletes the row."""
    return Column(
        "channel_id", _id(), ForeignKey("channels.channel_id", ondelete="CASCADE"), nullable=False
    )


def _ref(name: str, target: str, *, primary_key: bool = False) -> Column[int]:
    """A reference to another table's id: deleting that row deletes this one."""
    return Column(
        name,
        _id(),
        ForeignKey(target, ondelete="CASCADE"),
        primary_key=primary_key,
        autoincrement=False,
        nullable=False,
    )


_OPEN = "state IN ('queued', 'running')"

channels = Table(
    "channels",
    metadata,
    Column("channel_id", _id(), primary_key=True, autoincrement=False),
    Column("guild_id", _id()),
    Column("name", Text),
    # the model that answers /continue; switched only in the transaction that stores a new one
    Column(
        "active_model_id",
        _id(),
        ForeignKey("models.id", ondelete="SET NULL", use_alter=True, name="channels_active_model"),
    ),
    Column("created_at", Text, nullable=False),
    Column("last_version", Integer, nullable=False, server_default=text("0")),
    Column("replies", _id(), nullable=False, server_default=text("0")),
)

stories = Table(
    "stories",
    metadata,
    Column("id", _id(), primary_key=True),
    _channel(),
    Column("filename", Text, nullable=False),
    Column("uploader_id", _id()),
    Column("uploader_name", Text),
    Column("text", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("encoding", Text, nullable=False),
    Column("bytes", _id(), nullable=False),
    Column("symbols", _id(), nullable=False),
    Column("vocabulary_size", _id(), nullable=False),
    Column("created_at", Text, nullable=False),
    Index("stories_channel", "channel_id", "id"),
)

models = Table(
    "models",
    metadata,
    Column("id", _id(), primary_key=True),
    _channel(),
    Column("version", Integer, nullable=False),
    Column("config", Text, nullable=False),  # ModelConfig JSON
    Column("vocabulary", _json(), nullable=False),  # a list of strings
    Column("blob", LargeBinary, nullable=False),  # model.serialization.to_bytes()
    Column("figures", Text, nullable=False),  # TrainingFigures JSON
    Column("options", Text, nullable=False),  # the TrainOptions used, JSON
    Column("job_id", _id()),
    Column("created_at", Text, nullable=False),
    UniqueConstraint("channel_id", "version"),
)

# which stories (in training order) a model has seen: removing a story removes these models
model_stories = Table(
    "model_stories",
    metadata,
    _ref("model_id", "models.id", primary_key=True),
    _ref("story_id", "stories.id", primary_key=True),
    Column("position", Integer, nullable=False),
    Index("model_stories_story", "story_id"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", _id(), primary_key=True),
    _channel(),
    Column("guild_id", _id()),
    Column("requested_by", _id()),
    Column("requested_by_name", Text),
    Column("state", Text, nullable=False),
    Column("story_ids", _json(), nullable=False),  # a list of story ids, training order
    Column("options", Text, nullable=False),  # JSON
    Column("progress", Text),  # JSON of the last progress report
    Column("error", Text),
    Column("model_id", _id(), ForeignKey("models.id", ondelete="SET NULL")),
    Column("created_at", Text, nullable=False),
    Column("started_at", Text),
    Column("finished_at", Text),
    # where an adapter shows the job's live progress, until it has shown the job's end
    Column("progress_channel_id", _id()),
    Column("progress_message_id", _id()),
    Column("owner", Text),  # the process that runs it (bot/owner.py)
    CheckConstraint("state IN ('queued', 'running', 'done', 'failed', 'cancelled', 'interrupted')"),
    Index("jobs_channel", "channel_id", "id"),
    Index("jobs_open", "state", sqlite_where=text(_OPEN), postgresql_where=text(_OPEN)),
    Index(
        "jobs_progress_message",
        "id",
        sqlite_where=text("progress_message_id IS NOT NULL"),
        postgresql_where=text("progress_message_id IS NOT NULL"),
    ),
)

# a story learned from a channel's history keeps its messages with their authors
story_messages = Table(
    "story_messages",
    metadata,
    _ref("story_id", "stories.id", primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("message_id", _id(), nullable=False),
    Column("author_id", _id(), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Index("story_messages_author", "author_id"),
)

privacy_optouts = Table(
    "privacy_optouts",
    metadata,
    Column("guild_id", _id(), primary_key=True, autoincrement=False),
    Column("user_id", _id(), primary_key=True, autoincrement=False),
    Column("created_at", Text, nullable=False),
)

history_guilds = Table(
    "history_guilds",
    metadata,
    Column("guild_id", _id(), primary_key=True, autoincrement=False),
    Column("enabled_by", _id()),
    Column("created_at", Text, nullable=False),
)

guild_filters = Table(
    "guild_filters",
    metadata,
    Column("guild_id", _id(), primary_key=True, autoincrement=False),
    Column("folded", Text, primary_key=True),
    Column("word", Text, nullable=False),
    Column("added_by", _id()),
    Column("created_at", Text, nullable=False),
)

guild_filter_versions = Table(
    "guild_filter_versions",
    metadata,
    Column("guild_id", _id(), primary_key=True, autoincrement=False),
    Column("version", _id(), nullable=False),
)

# the cluster's shard plan: one row (bot/core/shard_plan.py); switch_at in epoch seconds
shard_plan = Table(
    "shard_plan",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("shard_count", Integer, nullable=False),
    Column("previous_count", Integer),
    Column("switch_at", Double, nullable=False),
    Column("changed_at", Text, nullable=False),
    CheckConstraint("id = 1"),
    CheckConstraint("shard_count >= 1"),
)

# the leases of the processes sharing one PostgreSQL database (bot/store/postgres/owners.py)
job_owners = Table(
    "job_owners",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("renewed_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=False),
    info={"dialect": POSTGRES_ONLY},
)
