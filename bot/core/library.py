"""A channel's library: its story card and figures, stories, model versions, rollback, removal
(with the policy of what answers and what retrains afterwards) and forgetting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot.config import Config
from bot.core.api import (
    ChannelRef,
    Member,
    ProgressCallback,
    RetrainReason,
    StoryCard,
    StoryRemoval,
    TrainingFigures,
    TrainingJob,
    TrainOptions,
)
from bot.core.figures import ChannelFigures, ModelVersion
from bot.core.job_records import figures_of
from bot.core.jobs import TrainingScheduler
from bot.core.model_cache import ModelCache
from bot.core.store import (
    JobRecord,
    JobState,
    ModelRecord,
    NewStory,
    RemovalFacts,
    RemovalPlan,
    StoryMessage,
    StoryRecord,
    StoryStore,
)
from bot.core.uploads import clean_filename, prepare_story
from bot.core.validation import JobOptions, RequestChecks, check_int
from bot.errors import InvalidOption, InvalidUpload, NoModel, NotAllowed, NotFound
from bot.messages import N_, Number
from model.config import default_n_input

logger = logging.getLogger(__name__)

NO_STORY = N_("This channel has no story #{story}; /story list shows them.")


def removal_plan(
    facts: RemovalFacts, options: JobOptions, *, member_data: bool = False
) -> RemovalPlan:
    """After a story's removal (or a member's data deletion, which removes or rewrites stories):
    if the active model learned one, the newest kept version that did not answers meanwhile,
    and a retraining is queued on the active model's remaining stories (or, if none remains
    and no version is left, on the newest remaining story)."""
    active = facts.active
    if active is None or active.version not in facts.deleted_versions:
        return RemovalPlan(activate_version=None, retrain_story_ids=(), retrain_options={})
    fallback = facts.remaining_versions[0] if facts.remaining_versions else None
    removed = {facts.story.id} if facts.removed_story_ids is None else set(facts.removed_story_ids)
    retrain = tuple(i for i in active.story_ids if i not in removed)
    if not retrain and fallback is None and facts.remaining_story_ids:
        retrain = (facts.remaining_story_ids[-1],)
    reason = RetrainReason(
        removed_story_id=facts.story.id, filename=facts.story.filename, member_data=member_data
    )
    return RemovalPlan(
        activate_version=fallback,
        retrain_story_ids=retrain,
        retrain_options=JobOptions(
            options.model, options.training, options.requested, reason
        ).to_dict(),
    )


class Library:
    def __init__(
        self,
        config: Config,
        store: StoryStore,
        scheduler: TrainingScheduler,
        cache: ModelCache,
        checks: RequestChecks,
        figures: ChannelFigures,
    ) -> None:
        self.config = config
        self.figures = figures
        self.store = store
        self.scheduler = scheduler
        self.cache = cache
        self.checks = checks

    async def story_card(self, channel: ChannelRef) -> StoryCard:
        model = await self.store.active_model(channel.channel_id)
        stories = {s.id: s for s in await self.store.list_stories(channel.channel_id)}
        job = self.scheduler.progress(channel)
        recent = await self.store.jobs(channel.channel_id, limit=5)
        last = next((r for r in recent if not JobState(r.state).open), None)
        last_result = None if last is None else await self.scheduler.ledger.result_of(last)
        latest: StoryRecord | None = None
        figures: TrainingFigures | None = None
        history = None
        if model is not None:
            known = [stories[i] for i in model.story_ids if i in stories]
            latest = known[-1] if known else None
            figures = figures_of(model.figures, model.id)
            if latest is not None:
                history = (await self.store.history_spans([latest.id])).get(latest.id)
        return StoryCard(
            channel=channel,
            has_model=model is not None,
            model_version=None if model is None else model.version,
            story_filename=None if latest is None else latest.filename,
            story_uploader=None if latest is None else latest.uploader_name,
            story_uploaded_at=None if latest is None else latest.created_at,
            stories=0 if model is None else len(model.story_ids),
            symbols=None if figures is None else figures.symbols,
            vocabulary_size=None if model is None else model.vocabulary_size,
            vocabulary_covered_share=None if figures is None else figures.covered_share,
            learnable_accuracy=None if figures is None else figures.learnable_accuracy,
            accuracy=None if figures is None else figures.accuracy,
            val_accuracy=None if figures is None else figures.val_accuracy,
            val_perplexity=None if figures is None else figures.val_perplexity,
            epochs=None if figures is None else figures.epochs,
            training_seconds=None if figures is None else figures.seconds,
            trained_at=None if model is None else model.created_at,
            job=job,
            last_job=last_result,
            notice=None if job is None else job.reason,
            vocabulary_cap=None if figures is None else figures.vocabulary_cap,
            history=history,
        )

    async def queue_story(
        self,
        channel: ChannelRef,
        member: Member,
        filename: str,
        data: bytes,
        append: bool,
        job_options: JobOptions,
        on_progress: ProgressCallback | None,
        *,
        messages: tuple[StoryMessage, ...] = (),
        text_filter: Callable[[str], tuple[str, int]] | None = None,
    ) -> tuple[TrainingJob, int]:
        """Store a story (an upload, or history ``messages``) and queue its training, holding
        the channel meanwhile (``TrainingScheduler.reserved``). ``text_filter``: the server's
        word filters (see ``prepare_story``). Returns the job and the words cut."""
        with self.scheduler.reserved(channel):
            record, cut = await self._add_story(
                channel, member, filename, data, append, job_options, messages, text_filter
            )
        return self.scheduler.enqueue(channel, record, on_progress), cut

    async def _add_story(
        self,
        channel: ChannelRef,
        member: Member,
        filename: str,
        data: bytes,
        append: bool,
        job_options: JobOptions,
        messages: tuple[StoryMessage, ...],
        text_filter: Callable[[str], tuple[str, int]] | None,
    ) -> tuple[JobRecord, int]:
        """Check an upload against the channel's limits and store it with its queued job."""
        limits = self.config.limits
        stories = await self.store.list_stories(channel.channel_id)
        if len(stories) >= limits.stories_per_channel:
            raise InvalidUpload(
                "This channel already holds {count} stories (the limit); remove one first.",
                count=len(stories),
            )
        prepared = await asyncio.to_thread(
            prepare_story,
            data,
            n_input=int(job_options.model.get("n_input") or default_n_input(0)),
            max_symbols=limits.story_symbols,
            text_filter=text_filter,
        )
        if append:
            total = prepared.symbols + sum(s.symbols for s in stories)
            if total > limits.story_symbols:
                raise InvalidUpload(
                    "With the earlier stories this would be {total} words and punctuation "
                    "marks; the limit is {limit}. Use mode replace, or remove a story first.",
                    total=Number(total),
                    limit=Number(limits.story_symbols),
                )
        self.scheduler.check_queue()
        record = await self.store.add_story_and_job(
            channel_id=channel.channel_id,
            guild_id=channel.guild_id,
            channel_name=channel.name,
            story=NewStory(
                filename=clean_filename(filename),
                uploader_id=member.user_id,
                uploader_name=member.display_name,
                text=prepared.text,
                sha256=prepared.sha256,
                encoding=prepared.encoding,
                bytes=len(data),
                symbols=prepared.symbols,
                vocabulary_size=prepared.vocabulary_size,
                messages=messages,
            ),
            append=append,
            requested_by=member.user_id,
            requested_by_name=member.display_name,
            options=job_options.to_dict(),
        )
        return record, prepared.filtered_words

    async def rollback(
        self, channel: ChannelRef, member: Member, version: int | None = None
    ) -> ModelVersion:
        """Make a kept version active (default: the one before the active one)."""
        if not member.is_admin:
            raise NotAllowed("You are not allowed to roll back this channel's model.")
        if version is not None:
            check_int("version", version, 1, 2**31 - 1)
        versions = await self.figures.versions(channel)
        if not versions:
            raise NoModel("This channel has no trained model to roll back.")
        if version is None:
            active = next((v.version for v in versions if v.active), None)
            older = [v.version for v in versions if active is None or v.version < active]
            if not older:
                raise NotFound("There is no earlier model version to roll back to.")
            version = older[0]
        record = await self.store.set_active_version(channel.channel_id, version)
        if record is None:
            kept = ", ".join(str(v.version) for v in versions)
            raise NotFound(
                "Version {version} is not kept; kept versions: {kept}.", version=version, kept=kept
            )
        return next(v for v in await self.figures.versions(channel) if v.version == version)

    async def remove_story(
        self,
        channel: ChannelRef,
        member: Member,
        story_id: int,
        on_progress: ProgressCallback | None = None,
    ) -> StoryRemoval:
        """Delete a story and every model trained on it; queue a retraining on what remains
        (see :func:`removal_plan`). Allowed for the story's uploader and admins; refused (Busy)
        while the channel trains."""
        check_int("story id", story_id, 1, 2**63 - 1)
        story = await self.store.story(channel.channel_id, story_id)
        if story is None:
            raise NotFound(NO_STORY, story=story_id)
        if not member.is_admin and member.user_id != story.uploader_id:
            raise NotAllowed("Only the member who uploaded this story or an admin can remove it.")
        self.scheduler.check_not_busy(channel)
        with self.scheduler.reserved(channel):
            options = self.retrain_options(await self.store.active_model(channel.channel_id))
            deletion = await self.store.delete_story(
                channel.channel_id,
                story_id,
                guild_id=channel.guild_id,
                policy=lambda facts: removal_plan(facts, options),
                requested_by=member.user_id,
                requested_by_name=member.display_name,
            )
        if deletion is None:
            raise NotFound(NO_STORY, story=story_id)
        self.cache.drop(channel.channel_id)
        logger.info(
            "channel %d: story %d removed with versions %s",
            channel.channel_id,
            story_id,
            deletion.deleted_versions,
        )
        retraining: TrainingJob | None = None
        if deletion.retrain_job is not None:
            queued = self.scheduler.enqueue(channel, deletion.retrain_job, on_progress)
            retraining = TrainingJob(
                job_id=queued.job_id,
                channel=channel,
                state=queued.state,
                queue_position=queued.queue_position,
                story_id=None,
                story_ids=queued.story_ids,
                requested_by=member.user_id,
            )
        return StoryRemoval(
            story_id=story_id,
            filename=story.filename,
            deleted_versions=deletion.deleted_versions,
            active_version=deletion.active_version,
            retraining=retraining,
        )

    def retrain_options(self, active: ModelRecord | None) -> JobOptions:
        """Options for a retraining: the active model's layers, n_input and seed (an n_input
        that the story's size chose is chosen again for the stories left)."""
        config = {} if active is None else active.config
        options = None if active is None else JobOptions.from_dict(active.options)
        seed = None if options is None else options.seed
        by_size = options is not None and options.model and "n_input" not in options.model
        candidate = TrainOptions(
            layers=config.get("layers"),
            n_input=None if by_size else config.get("n_input"),
            seed=seed,
        )
        try:
            return self.checks.job_options(candidate)
        except InvalidOption:
            return self.checks.job_options(TrainOptions())

    async def forget(self, channel: ChannelRef, member: Member) -> None:
        """Delete the channel's stories, models and jobs (cancelling an open job)."""
        if not member.is_admin:
            raise NotAllowed("You are not allowed to make fabulist forget this channel.")
        self.scheduler.discard(channel)
        await self.store.forget_channel(channel.channel_id)
        self.cache.drop(channel.channel_id)
