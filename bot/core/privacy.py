"""A member's consent and data: opting out of being learned from (per server), what fabulist keeps
of them, and ``delete_user_data`` (Red's ``red_delete_data_for_user`` convention): their uploads
and their messages in history stories go, every model trained on them goes (the removal policy
of ``/story remove``), and the affected channels retrain on what remains."""

from __future__ import annotations

import contextlib
import dataclasses
import logging

from bot.core.api import (
    ChannelRef,
    DataDeletion,
    Member,
    MemberData,
    RetrainReason,
    StoryInfo,
    TrainingJob,
)
from bot.core.history import rebuild_story
from bot.core.library import Library, removal_plan
from bot.core.store import RemovalFacts, RemovalPlan, StoryRecord
from bot.core.validation import JobOptions
from bot.errors import InvalidOption
from model.config import default_n_input

logger = logging.getLogger(__name__)

# Who cancels a training that holds the member's data, before it is deleted.
_PRIVACY = Member(user_id=0, display_name="fabulist privacy", is_admin=True)
# The end of a training another process ran on the data (the deletion's transaction ends it).
DELETED_WHILE_TRAINING = (
    "Training was cancelled: a member's data was deleted from this channel's stories. "
    "The channel retrains without it."
)


def _info(story: StoryRecord) -> StoryInfo:
    return StoryInfo(
        story.id, story.filename, story.uploader_id, story.uploader_name, story.symbols,
        story.created_at,
    )  # fmt: skip


class Privacy:
    """Members' consent and their data, over the library's parts (as ``Transfer``)."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self.config, self.store = library.config, library.store
        self.scheduler, self.cache = library.scheduler, library.cache

    async def set_opted_out(self, guild_id: int | None, user_id: int, opted_out: bool) -> None:
        if guild_id is None:
            raise InvalidOption("Opting out is per server: use it in a server channel.")
        await self.store.set_opted_out(guild_id, user_id, opted_out)

    async def member_data(self, user_id: int, guild_id: int | None) -> MemberData:
        records = await self.store.user_records(user_id, guild_id)
        return MemberData(
            user_id=user_id,
            guild_id=guild_id,
            opted_out=bool(records.opted_out_guilds),
            uploads=tuple((_info(story), text) for story, text in records.uploads),
            messages=tuple((_info(story), message) for story, message in records.messages),
        )

    async def delete_user_data(self, user_id: int, guild_id: int | None) -> DataDeletion:
        """Delete the member's data (in one server, or everywhere with None) and retrain.

        A training running on their data is cancelled first, so no model learned from it is
        stored afterwards; the affected channels are held meanwhile. Another process's training
        there ends in the deletion's transaction and stops within a second (``job_watch``)."""
        channel_ids = await self.store.user_channels(user_id, guild_id)
        refs = [ChannelRef(guild_id, channel_id) for channel_id in channel_ids]
        with contextlib.ExitStack() as held:
            for ref in refs:  # no new training starts in these channels meanwhile
                held.enter_context(self.scheduler.reserved(ref))
            cancelled_jobs: dict[int, tuple[tuple[int, ...], JobOptions]] = {}
            for ref in refs:
                open_job = self.scheduler.open_job(ref)
                cancelled = await self.scheduler.cancel(ref, _PRIVACY)
                if cancelled is not None:
                    if open_job is not None:
                        cancelled_jobs[ref.channel_id] = open_job
                    await self.scheduler.wait_for_job(cancelled.job_id)
            n_input = self.config.training.n_input or default_n_input(0)  # None: by size
            deletions = await self.store.delete_user_data(
                user_id,
                guild_id,
                policy=lambda facts: self._policy(
                    facts, cancelled_jobs.get(facts.story.channel_id)
                ),
                rebuild=lambda texts: rebuild_story(
                    texts, n_input=n_input, max_symbols=self.config.limits.story_symbols
                ),
                cancel_message=DELETED_WHILE_TRAINING,
            )
        retrainings: list[TrainingJob] = []
        for deletion in deletions:
            self.cache.drop(deletion.channel_id)
            if deletion.retrain_job is not None:
                channel = ChannelRef(deletion.guild_id, deletion.channel_id, deletion.channel_name)
                retrainings.append(self.scheduler.enqueue(channel, deletion.retrain_job, None))
        logger.info(
            "deleted the data of a member in %d channels (%d retrainings)",
            len(deletions),
            len(retrainings),
        )
        return DataDeletion(
            user_id=user_id,
            guild_id=guild_id,
            channels=len(deletions),
            removed_stories=sum(len(d.removed_story_ids) for d in deletions),
            rewritten_stories=sum(len(d.rewritten_story_ids) for d in deletions),
            deleted_versions=sum(len(d.deleted_versions) for d in deletions),
            retrainings=tuple(retrainings),
        )

    def _policy(
        self, facts: RemovalFacts, cancelled: tuple[tuple[int, ...], JobOptions] | None
    ) -> RemovalPlan:
        """``/story remove``'s plan; and a training cancelled for the deletion (a channel's
        first one, or one on a new story) runs again on what is left of its stories: it is what
        the channel asked for last, and its end message promised it."""
        plan = removal_plan(facts, self.library.retrain_options(facts.active), member_data=True)
        if cancelled is None:
            return plan
        story_ids, options = cancelled
        removed = set(facts.removed_story_ids or ())
        kept = tuple(story_id for story_id in story_ids if story_id not in removed)
        if not kept:
            return plan
        reason = RetrainReason(
            removed_story_id=facts.story.id, filename=facts.story.filename, member_data=True
        )
        again = JobOptions(options.model, options.training, options.requested, reason)
        return dataclasses.replace(plan, retrain_story_ids=kept, retrain_options=again.to_dict())
