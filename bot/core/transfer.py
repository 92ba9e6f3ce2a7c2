"""Export and import: a channel's stories, active model and card as one file (``bot.export``)."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from bot.core.api import ChannelRef, ImportResult, Member, StoryCard
from bot.core.library import Library
from bot.core.store import ImportedStory, NewModel, NewStory, now_iso
from bot.core.uploads import clean_filename, prepare_story
from bot.display import byte_size
from bot.errors import InvalidUpload, NoModel, NotAllowed, StorageError, UserError
from bot.export import (
    ChannelExport,
    ExportedStory,
    ExportLimits,
    InvalidExport,
    export_filename,
    read_export,
    write_export,
)
from bot.messages import Phrase
from model.config import MAX_N_INPUT

logger = logging.getLogger(__name__)


class Transfer:
    """Export and import over the library's parts (its store, scheduler, cache and config)."""

    def __init__(self, library: Library) -> None:
        self.library = library

    @property
    def limits(self) -> ExportLimits:
        limits = self.library.config.limits
        return ExportLimits(story_bytes=limits.story_bytes, stories=limits.stories_per_channel)

    async def export_channel(
        self, channel: ChannelRef, member: Member | None = None
    ) -> tuple[str, bytes]:
        """(file name, bytes) of the channel's export: stories, active model, its card.

        With ``member``, only admins may export (the file holds every uploaded text).
        """
        if member is not None and not member.is_admin:
            raise NotAllowed("You are not allowed to export this channel's stories.")
        snapshot = await self.library.store.snapshot(channel.channel_id)
        if snapshot is None:
            raise NoModel("This channel has no trained model to export. Use /train first.")
        card = await self.library.story_card(channel)
        positions = {record.id: i for i, (record, _) in enumerate(snapshot.stories)}
        export = ChannelExport(
            channel_name=_printable(snapshot.channel.name or channel.name),
            exported_at=now_iso(),
            stories=tuple(
                ExportedStory(
                    filename=record.filename,
                    uploader_id=record.uploader_id,
                    uploader_name=_printable(record.uploader_name),
                    created_at=record.created_at,
                    text=text,
                    sha256="",
                    symbols=record.symbols,
                )
                for record, text in snapshot.stories
            ),
            model_blob=snapshot.blob,
            model_sha256="",
            model_version=snapshot.model.version,
            model_created_at=snapshot.model.created_at,
            model_story_indexes=tuple(positions[i] for i in snapshot.model.story_ids),
            options={
                k: v
                for k, v in snapshot.model.options.items()
                if k in ("layers", "n_input", "seed", "mode") and v is not None
            },
            card={k: v for k, v in _card_fields(card).items() if v is not None},
        )
        data = await asyncio.to_thread(write_export, export)
        if len(data) > self.limits.file_bytes:
            raise UserError("This channel's export would be too large to import again.")
        return export_filename(export.channel_name, snapshot.model.version), data

    async def import_channel(
        self, channel: ChannelRef, member: Member, data: bytes
    ) -> ImportResult:
        """Restore an export into ``channel``: its stories join the channel's, its model becomes
        the active new version (earlier versions stay, so /story rollback undoes it).

        Every field is checked first (InvalidExport); on any error nothing is changed.
        """
        if not member.is_admin:
            raise NotAllowed("You are not allowed to import into this channel.")
        limits = self.limits
        if len(data) > limits.file_bytes:
            raise InvalidExport(
                "The file is {size}; an export may be {limit}.",
                size=byte_size(len(data)),
                limit=byte_size(limits.file_bytes),
            )
        self.library.scheduler.check_not_busy(channel)
        with self.library.scheduler.reserved(channel):
            parsed = await asyncio.to_thread(read_export, data, limits)
            assert parsed.model is not None
            model = parsed.model
            if model.config.n_input > MAX_N_INPUT:
                raise InvalidExport("The model's n_input is above {limit}.", limit=MAX_N_INPUT)
            stories = await asyncio.to_thread(self._check_imported_stories, parsed)
            options: dict[str, Any] = {
                **parsed.options,
                "mode": "import",
                "model": {k: v for k, v in model.config.to_dict().items() if k != "vocab_size"},
            }
            try:
                job, record, story_ids = await self.library.store.import_channel(
                    channel_id=channel.channel_id,
                    guild_id=channel.guild_id,
                    channel_name=channel.name,
                    stories=stories,
                    model_story_positions=parsed.model_story_indexes,
                    model=NewModel(
                        config=model.config.to_dict(),
                        vocabulary=model.vocabulary.symbols,
                        blob=parsed.model_blob,
                        figures=model.figures.to_dict(),
                        options=options,
                    ),
                    requested_by=member.user_id,
                    requested_by_name=member.display_name,
                    max_stories=self.library.config.limits.stories_per_channel,
                    keep_versions=self.library.config.storage.model_versions_kept,
                )
            except StorageError as exc:
                # The store's own words (a fault's) are English; its refusals are messages.
                reason = (
                    Phrase(exc.template, **exc.params) if isinstance(exc, UserError) else str(exc)
                )
                raise InvalidUpload(
                    "The export cannot be imported here: {reason}.", reason=reason
                ) from None
        self.library.cache.drop(channel.channel_id)
        logger.info(
            "channel %d: imported %d stories, model version %d (job %d)",
            channel.channel_id,
            len(story_ids),
            record.version,
            job.id,
        )
        return ImportResult(
            job_id=job.id,
            model_version=record.version,
            story_ids=story_ids,
            source_channel=parsed.channel_name,
            exported_at=parsed.exported_at,
            figures=model.figures,
        )

    def _check_imported_stories(self, parsed: ChannelExport) -> list[ImportedStory]:
        """Each story must pass the upload checks and match its declared symbol count."""
        assert parsed.model is not None
        stories = []
        for number, story in enumerate(parsed.stories, start=1):
            raw = story.text.encode("utf-8")
            try:
                prepared = prepare_story(
                    raw,
                    n_input=parsed.model.config.n_input,
                    max_symbols=self.library.config.limits.story_symbols,
                )
            except InvalidUpload as exc:
                raise InvalidExport(
                    "Story {number} in the file is refused: {reason}",
                    number=number,
                    reason=Phrase(exc.template, **exc.params),
                ) from None
            if prepared.symbols != story.symbols:
                raise InvalidExport(
                    "Story {number} in the file has {symbols} symbols, its manifest says "
                    "{declared}. Nothing was imported.",
                    number=number,
                    symbols=prepared.symbols,
                    declared=story.symbols,
                )
            stories.append(
                ImportedStory(
                    NewStory(
                        filename=clean_filename(story.filename),
                        uploader_id=story.uploader_id,
                        uploader_name=story.uploader_name,
                        text=prepared.text,
                        sha256=prepared.sha256,
                        encoding="utf-8",
                        bytes=len(raw),
                        symbols=prepared.symbols,
                        vocabulary_size=prepared.vocabulary_size,
                    ),
                    story.created_at,
                )
            )
        return stories


def _card_fields(card: StoryCard) -> dict[str, Any]:
    """The card's plain fields for an export (finite numbers, short texts only)."""
    fields: dict[str, Any] = {}
    for name in (
        "model_version",
        "story_filename",
        "story_uploader",
        "stories",
        "symbols",
        "vocabulary_size",
        "vocabulary_covered_share",
        "learnable_accuracy",
        "accuracy",
        "val_accuracy",
        "val_perplexity",
        "epochs",
        "training_seconds",
        "trained_at",
    ):
        value = getattr(card, name)
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        if isinstance(value, str):
            value = "".join(ch for ch in value if ch.isprintable())[:200] or None
        fields[name] = value
    return fields


def _printable(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = "".join(ch for ch in value if ch.isprintable())[:200]
    return cleaned or None
