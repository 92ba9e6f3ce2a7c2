"""The embeds and lists of ``/story show``, ``/story stats`` and ``/filter`` (no I/O), in a
language; the text that comes from a story is escaped (``rendering.escape_text``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord

from bot.adapters.language import ENGLISH, Language
from bot.adapters.text import (
    history_source_text,
    retrain_reason_text,
    stats_lines,
    vocabulary_text,
)
from bot.adapters.training_words import epoch_text, format_duration
from bot.discord_adapter.rendering import (
    EMBED_FIELD_LIMIT,
    escape_text,
    format_number,
    format_percent,
    format_timestamp,
    job_fraction,
    progress_bar,
    time_left,
    truncate,
)

if TYPE_CHECKING:
    from bot.core.api import FilterChange, FilteredWord, JobProgress, StoryCard
    from bot.core.figures import StoryStats


def job_state_word(state: str, lang: Language) -> str:
    """A job's state inside a sentence ("job #3 queued")."""
    words = {
        "queued": lang.gettext("queued"),
        "running": lang.gettext("running"),
        "cancelling": lang.gettext("cancelling"),
        "done": lang.gettext("finished"),
        "failed": lang.gettext("failed"),
        "cancelled": lang.gettext("cancelled"),
        "interrupted": lang.gettext("interrupted"),
    }
    return words.get(state, state)


def story_card_embed(
    card: StoryCard, *, permission: str = "Manage Channels", lang: Language = ENGLISH
) -> discord.Embed:
    """The ``/story show`` embed; ``permission`` names the right that lets members train."""
    _ = lang.gettext
    # Titles render mentions as raw text, so the title uses the channel's name.
    name = card.channel.name
    title = _("Story card · #{channel}", channel=escape_text(name)) if name else _("Story card")
    embed = discord.Embed(title=truncate(title, 256), colour=discord.Colour.blurple())
    job = card.job
    if not card.has_model:
        embed.description = _(
            "No story learned in this channel yet. Someone with {permission} can teach one "
            "with `/train`.",
            permission=permission,
        )
    if card.story_filename:
        name = escape_text(card.story_filename)
        if card.stories > 1:
            name += " " + _("(+{count} earlier)", count=card.stories - 1)
        embed.add_field(name=_("Story"), value=truncate(name, EMBED_FIELD_LIMIT), inline=True)
    if card.story_uploader:
        embed.add_field(
            name=_("Uploaded by"),
            value=truncate(escape_text(card.story_uploader), EMBED_FIELD_LIMIT),
            inline=True,
        )
    if card.story_uploaded_at is not None:
        embed.add_field(
            name=_("Uploaded"), value=format_timestamp(card.story_uploaded_at), inline=True
        )
    if card.history is not None:
        source = history_source_text(card.channel.name, card.history, lang)
        embed.add_field(
            name=_("Learned from"),
            value=truncate(escape_text(source), EMBED_FIELD_LIMIT),
            inline=False,
        )
    if card.has_model:
        embed.add_field(name=_("Model version"), value=f"v{card.model_version}", inline=True)
        if card.symbols is not None:
            embed.add_field(name=_("Symbols"), value=lang.number(card.symbols), inline=True)
        if card.vocabulary_size is not None:
            vocab = vocabulary_text(
                card.vocabulary_size, card.vocabulary_cap, card.vocabulary_covered_share, lang
            )
            embed.add_field(name=_("Vocabulary"), value=vocab, inline=True)
        embed.add_field(
            name=_("Learnable accuracy"),
            value=format_percent(card.learnable_accuracy, lang),
            inline=True,
        )
        if card.val_accuracy is not None or card.val_perplexity is not None:
            embed.add_field(
                name=_("Held-out"),
                value=_(
                    "accuracy {accuracy} · perplexity {perplexity}",
                    accuracy=format_percent(card.val_accuracy, lang),
                    perplexity=format_number(card.val_perplexity, 1, lang),
                ),
                inline=True,
            )
        if card.epochs is not None:
            embed.add_field(
                name=_("Training time"),
                value=lang.ngettext(
                    "{count} epoch, {time}",
                    "{count} epochs, {time}",
                    card.epochs or 0,
                    count=card.epochs or 0,
                    time=format_duration(card.training_seconds, lang),
                ),
                inline=True,
            )
        embed.add_field(name=_("Trained"), value=format_timestamp(card.trained_at), inline=True)
    embed.add_field(name=_("Training"), value=_training_state(job, lang), inline=False)
    last = card.last_job
    if job is None and last is not None and last.state != "done":
        state = _("job #{job} {state}", job=last.job_id, state=job_state_word(last.state, lang))
        embed.add_field(
            name=_("Last training"),
            value=truncate(
                state + (f": {escape_text(last.error)}" if last.error else ""), EMBED_FIELD_LIMIT
            ),
            inline=False,
        )
    if card.notice:
        embed.add_field(
            name=_("Note"),
            value=truncate(escape_text(retrain_reason_text(card.notice, lang)), EMBED_FIELD_LIMIT),
            inline=False,
        )
    return embed


def _training_state(job: JobProgress | None, lang: Language) -> str:
    _ = lang.gettext
    if job is None:
        return _("idle")
    if job.state == "queued":
        if job.queue_position:
            return _(
                "job #{job} queued (position {position})",
                job=job.job_id,
                position=job.queue_position,
            )
        return _("job #{job} {state}", job=job.job_id, state=job_state_word(job.state, lang))
    if job.state in ("running", "cancelling"):
        fraction = job_fraction(job)
        return _(
            "job #{job} {state}: `{bar}` {epoch}",
            job=job.job_id,
            state=job_state_word(job.state, lang),
            bar=progress_bar(fraction, 10),
            epoch=epoch_text(job.epoch, job.max_epochs, job.expected_epochs, lang),
        ) + time_left(job, ", ", lang)
    return _("job #{job} {state}", job=job.job_id, state=job_state_word(job.state, lang))


def story_stats_embed(
    stats: StoryStats, channel_name: str | None, lang: Language = ENGLISH
) -> discord.Embed:
    """The ``/story stats`` embed: the shared text figures, escaped."""
    if channel_name:
        title = lang.gettext("Story stats · #{channel}", channel=escape_text(channel_name))
    else:
        title = lang.gettext("Story stats")
    embed = discord.Embed(title=truncate(title, 256), colour=discord.Colour.blurple())
    for label, value in stats_lines(stats, lang):
        embed.add_field(
            name=label, value=truncate(escape_text(value), EMBED_FIELD_LIMIT), inline=False
        )
    return embed


def filter_change_text(change: FilterChange, *, added: bool, lang: Language = ENGLISH) -> str:
    """The answer to ``/filter add`` or ``/filter remove`` (only the admin sees it)."""
    word = escape_text(change.word)
    total = lang.ngettext(
        "This server filters {count} word.",
        "This server filters {count} words.",
        change.count,
        count=change.count,
    )
    if added and not change.changed:
        return lang.gettext("“{word}” was already filtered.", word=word) + " " + total
    if added:
        return (
            lang.gettext(
                "Filtered “{word}”: no channel of this server will generate it (whatever its "
                "case or accents), and prompts that contain it are refused.",
                word=word,
            )
            + " "
            + total
        )
    return lang.gettext("“{word}” is no longer filtered.", word=word) + " " + total


def filter_list_text(words: Sequence[FilteredWord], lang: Language = ENGLISH) -> str:
    """``/filter list`` (only the admin sees it)."""
    if not words:
        return lang.gettext("This server filters no words. Add one with `/filter add`.")
    lines = [
        lang.ngettext(
            "**{count} filtered word** (oldest first)",
            "**{count} filtered words** (oldest first)",
            len(words),
            count=len(words),
        )
    ]
    for item in words:
        who = ""
        if item.added_by is not None:
            who = " · " + lang.gettext("by {member}", member=f"<@{item.added_by}>")
        lines.append(f"• {escape_text(item.word)}{who} · {format_timestamp(item.created_at)}")
    return "\n".join(lines)
