"""Text and embed rendering for the Discord adapter (no I/O, no service calls).

Untrusted text policy: everything that comes from a story (generated continuations, file names,
uploader names) goes through :func:`escape_text` before it is put into a message. That escapes
Discord markdown (bold, italics, strike-through, spoiler bars, code spans and fences, quotes,
headings, lists, masked links) with backslashes, so the text is shown literally and cannot end
or open a formatting span of the surrounding reply. Mentions are also neutralised with a
zero-width space, and every message is additionally sent with ``AllowedMentions.none()`` (the
bot's default), so nothing a story contains can ever ping anyone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import discord

from bot.adapters.text import (
    history_source_text,
    retrain_reason_text,
    stats_lines,
    unknown_words_text,
)
from bot.display import (
    count_text,
    display_prose,
    epoch_text,
    format_duration,
    stop_reason_text,
    time_left_text,
    training_fraction,
    vocabulary_text,
)

if TYPE_CHECKING:
    from bot.core.api import (
        FilterChange,
        FilteredWord,
        JobProgress,
        JobResult,
        StoryCard,
        UnknownWord,
    )
    from bot.core.figures import StoryStats

MESSAGE_LIMIT = 2000
EMBED_FIELD_LIMIT = 1024
CHOICE_LIMIT = 100
BAR_WIDTH = 20
_ESCAPED = re.compile(r"\\([^\w\s])")  # a backslash escape of escape_text

_STATE_LABELS = {
    "queued": "Queued",
    "running": "Training",
    "cancelling": "Cancelling",
    "done": "Finished",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "interrupted": "Interrupted",
}


def escape_text(text: str) -> str:
    """Make user-derived text display literally: no markdown, no mentions."""
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def truncate(text: str, limit: int, ellipsis: str = "…") -> str:
    """Cut ``text`` to at most ``limit`` characters, marking the cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ellipsis))] + ellipsis


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters.

    Prefers line breaks, then spaces; never splits right after a backslash, so an escape
    produced by :func:`escape_text` always stays with the character it escapes.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = window.rfind("\n")
        if cut < limit // 2:
            cut = window.rfind(" ")
        if cut < limit // 2:
            cut = limit
            while cut > 1 and rest[cut - 1] == "\\":
                cut -= 1
        chunk = rest[:cut].rstrip()
        if chunk:
            chunks.append(chunk)
        rest = rest[cut:].lstrip()
    if rest.strip() or not chunks:
        chunks.append(rest)
    return chunks


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A text bar such as ``████████░░░░``; ``fraction`` is clamped to 0..1."""
    if math.isnan(fraction):
        fraction = 0.0
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled)


def time_left(progress: JobProgress, separator: str) -> str:
    """``separator`` + the ETA in words (:func:`bot.display.time_left_text`)."""
    return separator + time_left_text(progress.eta_seconds, progress.expected_epochs)


def format_percent(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value * 100:.1f}%"


def format_number(value: float | None, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.{digits}f}"


def format_timestamp(value: datetime | str | float | None) -> str:
    """A Discord timestamp tag (renders in the reader's time zone) or the raw value."""
    if value is None:
        return "–"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return escape_text(str(value))
    if isinstance(value, int | float):
        return f"<t:{int(value)}:f>"
    return discord.utils.format_dt(value, "f")


def progress_text(filename: str, progress: JobProgress) -> str:
    """The live progress message of one training job."""
    state = _STATE_LABELS.get(progress.state, progress.state.capitalize())
    header = f"**{state}** {escape_text(filename)} · job #{progress.job_id}"
    if progress.state == "queued":
        position = progress.queue_position
        where = f" (position {position} in the queue)" if position else ""
        return f"{header}\nWaiting for a free training worker{where}."
    if progress.state == "running" and progress.epoch == 0:
        return f"{header}\nStarting: preparing the story and the network…"
    fraction = job_fraction(progress)
    lines = [
        header,
        f"`{progress_bar(fraction)}` {fraction * 100:.0f}% · "
        + epoch_text(progress.epoch, progress.max_epochs, progress.expected_epochs),
        f"loss {format_number(progress.loss)} · accuracy {format_percent(progress.accuracy)}"
        f" · learnable {format_percent(progress.learnable_accuracy)}",
        f"elapsed {format_duration(progress.elapsed_seconds)}{time_left(progress, ' · ')}",
    ]
    return "\n".join(lines)


def result_text(filename: str, result: JobResult) -> str:
    """The message that replaces the progress message once a job has ended."""
    state = _STATE_LABELS.get(result.state, result.state.capitalize())
    header = f"**{state}** {escape_text(filename)} · job #{result.job_id}"
    if result.state != "done":
        reason = f"\n{escape_text(result.error)}" if result.error else ""
        return truncate(header + reason, MESSAGE_LIMIT)
    if result.imported:
        header = f"**Imported** {escape_text(filename)} · job #{result.job_id}"
    if result.model_version is not None:
        header += f" · model v{result.model_version}"
    lines = [header]
    if result.imported:
        lines.append(
            "An export file: its stories and trained model were imported, no training ran here."
            + (" Its figures:" if result.figures is not None else "")
        )
    figures = result.figures
    if figures is not None:
        parts = [f"{figures.symbols:,} symbols"]
        if figures.vocabulary_size is not None:
            parts.append(f"vocabulary {figures.vocabulary_size:,}")
        parts.append(f"{count_text(figures.epochs, 'epoch')} in {format_duration(figures.seconds)}")
        stopped = stop_reason_text(figures.stopped)
        if stopped:
            parts.append(stopped)
        lines.append(" · ".join(parts))
        lines.append(
            f"learnable accuracy {format_percent(figures.learnable_accuracy)}"
            f" · accuracy {format_percent(figures.accuracy)}"
            f" · loss {format_number(figures.loss)}"
        )
        if figures.val_accuracy is not None or figures.val_perplexity is not None:
            lines.append(
                f"held-out accuracy {format_percent(figures.val_accuracy)}"
                f" · perplexity {format_number(figures.val_perplexity, 1)}"
            )
        else:
            lines.append("No held-out figures: the story is too short to set text aside.")
    lines.append("Try `/continue` with a few words from the story.")
    return truncate("\n".join(lines), MESSAGE_LIMIT)


def job_fraction(progress: JobProgress) -> float:
    """How far a job is, 0..1 (time-based once the ETA is known; see ``training_fraction``)."""
    return training_fraction(
        progress.epoch, progress.max_epochs, progress.elapsed_seconds, progress.eta_seconds
    )


def continuation_text(
    text: str,
    *,
    model_version: int,
    original_share: float | None,
    lead: str = "",
    unknown_words: Sequence[UnknownWord] = (),
) -> str:
    """A continuation as prose, escaped, with a footer (split it to send it).

    ``lead`` ("…" for a Continue reply) goes before the text; the text is capitalised for
    display (:func:`bot.display.display_prose`), not at the start after a lead. The footer's
    small lines ("-# ", which "Continue this" leaves out) name the prompt's unknown words, if
    any, then the model version and the share from the story.
    """
    footer = f"-# model v{model_version}"
    if original_share is not None:
        footer += f" · {original_share * 100:.0f}% from the story"
    note = unknown_words_text(unknown_words)
    if note:
        footer = f"-# {escape_text(note)}\n{footer}"
    body = text.strip()
    body = escape_text(display_prose(lead + body)) if body else "…"
    return f"{body}\n{footer}"


def message_story_text(content: str, *, own: bool) -> str:
    """The story words of a message for "Continue this": for one of the bot's own replies,
    without its footer line and the escapes :func:`continuation_text` added."""
    if not own:
        return content
    lines = content.split("\n")
    while lines and (lines[-1].startswith("-# ") or not lines[-1].strip()):
        lines.pop()
    return _ESCAPED.sub(r"\1", "\n".join(lines)).replace("\u200b", "")


def story_card_embed(card: StoryCard, *, permission: str = "Manage Channels") -> discord.Embed:
    """The ``/story show`` embed; ``permission`` names the right that lets members train."""
    # Titles render mentions as raw text, so the title uses the channel's name.
    name = card.channel.name
    title = f"Story card · #{escape_text(name)}" if name else "Story card"
    embed = discord.Embed(title=truncate(title, 256), colour=discord.Colour.blurple())
    job = card.job
    if not card.has_model:
        embed.description = (
            f"No story learned in this channel yet. Someone with {permission} can teach one "
            "with `/train`."
        )
    if card.story_filename:
        name = escape_text(card.story_filename)
        if card.stories > 1:
            name += f" (+{card.stories - 1} earlier)"
        embed.add_field(name="Story", value=truncate(name, EMBED_FIELD_LIMIT), inline=True)
    if card.story_uploader:
        embed.add_field(
            name="Uploaded by",
            value=truncate(escape_text(card.story_uploader), EMBED_FIELD_LIMIT),
            inline=True,
        )
    if card.story_uploaded_at is not None:
        embed.add_field(
            name="Uploaded", value=format_timestamp(card.story_uploaded_at), inline=True
        )
    if card.history is not None:
        source = history_source_text(card.channel.name, card.history)
        embed.add_field(
            name="Learned from",
            value=truncate(escape_text(source), EMBED_FIELD_LIMIT),
            inline=False,
        )
    if card.has_model:
        embed.add_field(name="Model version", value=f"v{card.model_version}", inline=True)
        if card.symbols is not None:
            embed.add_field(name="Symbols", value=f"{card.symbols:,}", inline=True)
        if card.vocabulary_size is not None:
            vocab = vocabulary_text(
                card.vocabulary_size, card.vocabulary_cap, card.vocabulary_covered_share
            )
            embed.add_field(name="Vocabulary", value=vocab, inline=True)
        embed.add_field(
            name="Learnable accuracy", value=format_percent(card.learnable_accuracy), inline=True
        )
        if card.val_accuracy is not None or card.val_perplexity is not None:
            embed.add_field(
                name="Held-out",
                value=f"accuracy {format_percent(card.val_accuracy)} · perplexity "
                f"{format_number(card.val_perplexity, 1)}",
                inline=True,
            )
        if card.epochs is not None:
            embed.add_field(
                name="Training time",
                value=(
                    f"{count_text(card.epochs or 0, 'epoch')}, "
                    f"{format_duration(card.training_seconds)}"
                ),
                inline=True,
            )
        embed.add_field(name="Trained", value=format_timestamp(card.trained_at), inline=True)
    embed.add_field(name="Training", value=_training_state(job), inline=False)
    last = card.last_job
    if job is None and last is not None and last.state != "done":
        embed.add_field(
            name="Last training",
            value=truncate(
                f"job #{last.job_id} {last.state}"
                + (f": {escape_text(last.error)}" if last.error else ""),
                EMBED_FIELD_LIMIT,
            ),
            inline=False,
        )
    if card.notice:
        embed.add_field(
            name="Note",
            value=truncate(escape_text(retrain_reason_text(card.notice)), EMBED_FIELD_LIMIT),
            inline=False,
        )
    return embed


def _training_state(job: JobProgress | None) -> str:
    if job is None:
        return "idle"
    if job.state == "queued":
        if job.queue_position:
            return f"job #{job.job_id} queued (position {job.queue_position})"
        return f"job #{job.job_id} queued"
    if job.state in ("running", "cancelling"):
        fraction = job_fraction(job)
        return (
            f"job #{job.job_id} {job.state}: `{progress_bar(fraction, 10)}` "
            f"{epoch_text(job.epoch, job.max_epochs, job.expected_epochs)}{time_left(job, ', ')}"
        )
    return f"job #{job.job_id} {job.state}"


def word_choices(typed: str, words: Iterable[str]) -> list[tuple[str, str]]:
    """Autocomplete choices ``(name, value)`` that replace the word being typed in ``typed``."""
    head, _, _ = typed.rpartition(" ")
    prefix = f"{head} " if head else ""
    choices: list[tuple[str, str]] = []
    for word in words:
        value = prefix + word
        # Discord rejects longer choices; a prompt this long has nothing useful to complete.
        if len(value) <= CHOICE_LIMIT:
            choices.append((value, value))
    return choices[:25]


def story_stats_embed(stats: StoryStats, channel_name: str | None) -> discord.Embed:
    """The ``/story stats`` embed: the shared text figures, escaped."""
    title = f"Story stats · #{escape_text(channel_name)}" if channel_name else "Story stats"
    embed = discord.Embed(title=truncate(title, 256), colour=discord.Colour.blurple())
    for label, value in stats_lines(stats):
        embed.add_field(
            name=label, value=truncate(escape_text(value), EMBED_FIELD_LIMIT), inline=False
        )
    return embed


def filter_change_text(change: FilterChange, *, added: bool) -> str:
    """The answer to ``/filter add`` or ``/filter remove`` (only the admin sees it)."""
    word = escape_text(change.word)
    total = f"This server filters {change.count} word{'' if change.count == 1 else 's'}."
    if added and not change.changed:
        return f"“{word}” was already filtered. {total}"
    if added:
        return (
            f"Filtered “{word}”: no channel of this server will generate it (whatever its "
            f"case or accents), and prompts that contain it are refused. {total}"
        )
    return f"“{word}” is no longer filtered. {total}"


def filter_list_text(words: Sequence[FilteredWord]) -> str:
    """``/filter list`` (only the admin sees it)."""
    if not words:
        return "This server filters no words. Add one with `/filter add`."
    lines = [f"**{len(words)} filtered word{'' if len(words) == 1 else 's'}** (oldest first)"]
    for item in words:
        who = f" · by <@{item.added_by}>" if item.added_by is not None else ""
        lines.append(f"• {escape_text(item.word)}{who} · {format_timestamp(item.created_at)}")
    return "\n".join(lines)
