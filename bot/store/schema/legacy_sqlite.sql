-- Frozen (2026-12-07): fabulist's numbered migrations 1-10, before Alembic. The baseline revision
-- (bot/store/schema/versions/r0010_baseline.py) applies the ones a database lacks; new changes
-- are Alembic revisions, one for both backends. Never edit this file.
--
-- fabulist database schema.
--
-- The file is a list of migrations. Each starts with a line "-- migration N" and moves the database
-- from PRAGMA user_version N-1 to N; StoryStore applies the missing ones in order, each in one
-- transaction together with the new user_version. Never edit a released migration: append one.
-- Times are ISO 8601 UTC text. JSON columns hold plain JSON (never pickle).

-- migration 1
CREATE TABLE channels (
    channel_id      INTEGER PRIMARY KEY,
    guild_id        INTEGER,
    name            TEXT,
    -- the model that answers /continue; switched only in the transaction that stores a new one
    active_model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
    created_at      TEXT NOT NULL
);

CREATE TABLE stories (
    id              INTEGER PRIMARY KEY,
    channel_id      INTEGER NOT NULL REFERENCES channels(channel_id) ON DELETE CASCADE,
    filename        TEXT NOT NULL,
    uploader_id     INTEGER,
    uploader_name   TEXT,
    text            TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    encoding        TEXT NOT NULL,
    bytes           INTEGER NOT NULL,
    symbols         INTEGER NOT NULL,
    vocabulary_size INTEGER NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX stories_channel ON stories(channel_id, id);

CREATE TABLE models (
    id          INTEGER PRIMARY KEY,
    channel_id  INTEGER NOT NULL REFERENCES channels(channel_id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    config      TEXT NOT NULL,      -- ModelConfig JSON
    vocabulary  TEXT NOT NULL,      -- Vocabulary JSON (list of symbols)
    blob        BLOB NOT NULL,      -- model.serialization.to_bytes()
    figures     TEXT NOT NULL,      -- TrainingFigures JSON
    options     TEXT NOT NULL,      -- the TrainOptions used, JSON
    job_id      INTEGER,
    created_at  TEXT NOT NULL,
    UNIQUE (channel_id, version)
);

-- which stories (in training order) a model has seen: removing a story removes these models
CREATE TABLE model_stories (
    model_id    INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    story_id    INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    PRIMARY KEY (model_id, story_id)
);
CREATE INDEX model_stories_story ON model_stories(story_id);

CREATE TABLE jobs (
    id                 INTEGER PRIMARY KEY,
    channel_id         INTEGER NOT NULL REFERENCES channels(channel_id) ON DELETE CASCADE,
    guild_id           INTEGER,
    requested_by       INTEGER,
    requested_by_name  TEXT,
    state              TEXT NOT NULL CHECK (state IN
                           ('queued', 'running', 'done', 'failed', 'cancelled', 'interrupted')),
    story_ids          TEXT NOT NULL,  -- JSON list, training order
    options            TEXT NOT NULL,  -- JSON
    progress           TEXT,           -- JSON of the last progress report
    error              TEXT,
    model_id           INTEGER REFERENCES models(id) ON DELETE SET NULL,
    created_at         TEXT NOT NULL,
    started_at         TEXT,
    finished_at        TEXT
);
CREATE INDEX jobs_channel ON jobs(channel_id, id);
CREATE INDEX jobs_open ON jobs(state) WHERE state IN ('queued', 'running');

-- a model without its blob, with its stories in training order and whether it is active
CREATE VIEW model_info AS
SELECT m.id, m.channel_id, m.version, m.config,
       json_array_length(m.vocabulary) AS vocabulary_size,
       m.figures, m.options, m.job_id, m.created_at,
       (SELECT json_group_array(story_id) FROM
           (SELECT story_id FROM model_stories WHERE model_id = m.id ORDER BY position))
           AS story_ids,
       (c.active_model_id IS m.id) AS active
FROM models m JOIN channels c ON c.channel_id = m.channel_id;

-- migration 2
-- Versions never repeat within a channel, even after the newest were deleted with a story.
ALTER TABLE channels ADD COLUMN last_version INTEGER NOT NULL DEFAULT 0;
UPDATE channels SET last_version =
    coalesce((SELECT max(version) FROM models m WHERE m.channel_id = channels.channel_id), 0);

-- migration 3
-- Where an adapter shows a job's live progress (a Discord channel message), kept until the adapter
-- has updated it to the job's end: after a crash the next process finds the messages that would
-- otherwise show a running job forever.
ALTER TABLE jobs ADD COLUMN progress_channel_id INTEGER;
ALTER TABLE jobs ADD COLUMN progress_message_id INTEGER;
CREATE INDEX jobs_progress_message ON jobs(id) WHERE progress_message_id IS NOT NULL;

-- migration 4
-- The process that runs a job (see bot/owner.py): start-up interrupts only open jobs whose owner
-- is gone, so an offline command never interrupts the live bot's jobs. NULL: written before.
ALTER TABLE jobs ADD COLUMN owner TEXT;

-- migration 5
-- Replies served per channel (/story stats).
ALTER TABLE channels ADD COLUMN replies INTEGER NOT NULL DEFAULT 0;

-- migration 6
-- A story learned from a channel's history keeps its messages with their authors, so that one
-- member's messages can be deleted (/privacy forget) and the story's text rebuilt from the rest.
CREATE TABLE story_messages (
    story_id    INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,
    author_id   INTEGER NOT NULL,
    text        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (story_id, position)
);
CREATE INDEX story_messages_author ON story_messages(author_id);
-- Members who opted out of being learned from, per server (/privacy optout).
CREATE TABLE privacy_optouts (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);
-- Servers whose admins allowed learning from channel history (/privacy server).
CREATE TABLE history_guilds (
    guild_id    INTEGER PRIMARY KEY,
    enabled_by  INTEGER,
    created_at  TEXT NOT NULL
);

-- migration 7
-- Words a server never lets its channels' models say (/filter). ``word`` as the admin typed it;
-- ``folded`` its case- and accent-insensitive key (bot/core/filters.py), unique per server.
CREATE TABLE guild_filters (
    guild_id   INTEGER NOT NULL,
    folded     TEXT NOT NULL,
    word       TEXT NOT NULL,
    added_by   INTEGER,
    created_at TEXT NOT NULL,
    PRIMARY KEY (guild_id, folded)
);

-- migration 8
-- A server's filters version: one more with each change of its filters (in the change's
-- transaction), so every process caching them (bot/core/filters.py) sees another's change at its
-- next use.
CREATE TABLE guild_filter_versions (
    guild_id INTEGER PRIMARY KEY,
    version  INTEGER NOT NULL
);

-- migration 9
-- PostgreSQL's job_owners (the leases of the processes sharing one database). One SQLite file
-- is one host's: its owners are checked on that host (bot/owner.py), nothing to store.

-- migration 10
-- The cluster's shard plan (bot/core/shard_plan.py): the shard count whose processes answer
-- interactions, the count before it, and when the switch takes effect (seconds since the epoch,
-- the store's clock). One row, written by the first sharded process or `python -m bot reshard`.
CREATE TABLE shard_plan (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    shard_count    INTEGER NOT NULL CHECK (shard_count >= 1),
    previous_count INTEGER,
    switch_at      REAL NOT NULL,
    changed_at     TEXT NOT NULL
);
