"""A removal's common part (``delete_story`` and ``delete_user_data``): the models trained on
the affected stories go, then the core's policy decides what answers and what retrains."""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.store import JobRecord, RemovalFacts, RemovalPolicy, StoryRecord
from bot.errors import StorageError
from bot.store.aggregates.jobs import JobTables
from bot.store.aggregates.models import ACTIVATE, ACTIVE_MODEL, ModelTables, model_record
from bot.store.sql import Connection, Sql

TRAINED_ON = Sql(
    "SELECT m.id, m.version, EXISTS (SELECT 1 FROM model_stories ms "
    "WHERE ms.model_id = m.id AND ms.story_id IN_IDS(:story_ids)) AS trained_on_it "
    "FROM models m WHERE m.channel_id = :channel_id ORDER BY m.version DESC"
)
STORY_IDS = Sql("SELECT id FROM stories WHERE channel_id = :channel_id ORDER BY id")
DELETE_MODELS = Sql("DELETE FROM models WHERE id IN_IDS(:model_ids)")
DELETE_STORIES = Sql("DELETE FROM stories WHERE id IN_IDS(:story_ids)")


class RemovalTables(JobTables, ModelTables):
    async def _remove_stories(
        self,
        db: Connection,
        story: StoryRecord,
        removed: Sequence[int],
        rewritten: Sequence[int],
        guild_id: int | None,
        policy: RemovalPolicy,
        requested_by: int | None,
        requested_by_name: str | None,
    ) -> tuple[RemovalFacts, int | None, JobRecord | None]:
        """Inside a transaction: delete every model version of ``story``'s channel trained on a
        ``removed`` or ``rewritten`` story, and the ``removed`` stories; then apply ``policy``'s
        plan. Returns the facts, the version active afterwards and the queued retraining."""
        channel_id = story.channel_id
        active_row = await db.fetchrow(ACTIVE_MODEL, channel_id=channel_id)
        active = None if active_row is None else model_record(active_row)
        rows = await db.fetch(
            TRAINED_ON, story_ids=db.ids([*removed, *rewritten]), channel_id=channel_id
        )
        doomed = [r for r in rows if r["trained_on_it"]]
        kept = {int(r["version"]): int(r["id"]) for r in rows if not r["trained_on_it"]}
        others = await db.fetch(STORY_IDS, channel_id=channel_id)
        facts = RemovalFacts(
            story=story,
            active=active,
            deleted_versions=tuple(sorted(int(r["version"]) for r in doomed)),
            remaining_versions=tuple(kept),
            remaining_story_ids=tuple(int(r["id"]) for r in others if r["id"] not in removed),
            removed_story_ids=tuple(removed),
        )
        plan = policy(facts)
        await db.execute(DELETE_MODELS, model_ids=db.ids(int(r["id"]) for r in doomed))
        await db.execute(DELETE_STORIES, story_ids=db.ids(removed))
        active_after = None
        if active is not None and active.version not in facts.deleted_versions:
            active_after = active.version
        if plan.activate_version is not None:
            if plan.activate_version not in kept:
                raise StorageError(f"version {plan.activate_version} is not kept")
            await db.execute(ACTIVATE, model_id=kept[plan.activate_version], channel_id=channel_id)
            active_after = plan.activate_version
        job: JobRecord | None = None
        if plan.retrain_story_ids:
            job_id = await self._insert_job(
                db,
                channel_id,
                guild_id,
                requested_by,
                requested_by_name,
                plan.retrain_story_ids,
                plan.retrain_options,
            )
            job = await self._job_row(db, job_id)
        return facts, active_after, job
