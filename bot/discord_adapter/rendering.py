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

from bot.adapters.language import ENGLISH, Language
from bot.adapters.text import unknown_words_text
from bot.adapters.training_words import (
    epoch_text,
    format_duration,
    stop_reason_text,
    time_left_text,
)
from bot.display import display_prose, training_fraction

if TYPE_CHECKING:
    from bot.core.api import JobProgress, JobResult, UnknownWord

MESSAGE_LIMIT = 2000
EMBED_FIELD_LIMIT = 1024
CHOICE_LIMIT = 100
BAR_WIDTH = 20
_ESCAPED = re.compile(r"\\([^\w\s])")  # a backslash escape of escape_text


def state_label(state: str, lang: Language) -> str:
    """A job's state as a progress message's header says it."""
    labels = {
        "queued": lang.gettext("Queued"),
        "running": lang.gettext("Training"),
        "cancelling": lang.gettext("Cancelling"),
        "done": lang.gettext("Finished"),
        "failed": lang.gettext("Failed"),
        "cancelled": lang.gettext("Cancelled"),
        "interrupted": lang.gettext("Interrupted"),
    }
    return labels.get(state, state.capitalize())


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


def time_left(progress: JobProgress, separator: str, lang: Language = ENGLISH) -> str:
    """``separator`` + the ETA in words (:func:`bot.adapters.training_words.time_left_text`)."""
    return separator + time_left_text(progress.eta_seconds, progress.expected_epochs, lang)


def format_percent(value: float | None, lang: Language = ENGLISH) -> str:
    if value is None or math.isnan(value):
        return "–"
    return lang.percent(value)


def format_number(value: float | None, digits: int = 3, lang: Language = ENGLISH) -> str:
    if value is None or math.isnan(value):
        return "–"
    return lang.number(value, digits, grouped=False)


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


def job_header(state: str, filename: str, job_id: int, lang: Language) -> str:
    job = lang.gettext("job #{job}", job=job_id)
    return f"**{state_label(state, lang)}** {escape_text(filename)} · {job}"


def progress_text(filename: str, progress: JobProgress, lang: Language = ENGLISH) -> str:
    """The live progress message of one training job."""
    header = job_header(progress.state, filename, progress.job_id, lang)
    if progress.state == "queued":
        position = progress.queue_position
        if position:
            return (
                header
                + "\n"
                + lang.gettext(
                    "Waiting for a free training worker (position {position} in the queue).",
                    position=position,
                )
            )
        return header + "\n" + lang.gettext("Waiting for a free training worker.")
    if progress.state == "running" and progress.epoch == 0:
        return header + "\n" + lang.gettext("Starting: preparing the story and the network…")
    fraction = job_fraction(progress)
    epoch = epoch_text(progress.epoch, progress.max_epochs, progress.expected_epochs, lang)
    lines = [
        header,
        f"`{progress_bar(fraction)}` {lang.percent(fraction, 0)} · {epoch}",
        lang.gettext(
            "loss {loss} · accuracy {accuracy} · learnable {learnable}",
            loss=format_number(progress.loss, 3, lang),
            accuracy=format_percent(progress.accuracy, lang),
            learnable=format_percent(progress.learnable_accuracy, lang),
        ),
        lang.gettext("elapsed {time}", time=format_duration(progress.elapsed_seconds, lang))
        + time_left(progress, " · ", lang),
    ]
    return "\n".join(lines)


def result_text(filename: str, result: JobResult, lang: Language = ENGLISH) -> str:
    """The message that replaces the progress message once a job has ended."""
    header = job_header(result.state, filename, result.job_id, lang)
    if result.state != "done":
        reason = f"\n{escape_text(result.error)}" if result.error else ""
        return truncate(header + reason, MESSAGE_LIMIT)
    if result.imported:
        job = lang.gettext("job #{job}", job=result.job_id)
        header = f"**{lang.gettext('Imported')}** {escape_text(filename)} · {job}"
    if result.model_version is not None:
        header += " · " + lang.gettext("model v{version}", version=result.model_version)
    lines = [header]
    if result.imported:
        lines.append(
            lang.gettext(
                "An export file: its stories and trained model were imported, no training ran here."
            )
            + (" " + lang.gettext("Its figures:") if result.figures is not None else "")
        )
    figures = result.figures
    if figures is not None:
        parts = [lang.gettext("{count} symbols", count=lang.number(figures.symbols))]
        if figures.vocabulary_size is not None:
            parts.append(
                lang.gettext("vocabulary {count}", count=lang.number(figures.vocabulary_size))
            )
        parts.append(
            lang.ngettext(
                "{count} epoch in {time}",
                "{count} epochs in {time}",
                figures.epochs,
                count=figures.epochs,
                time=format_duration(figures.seconds, lang),
            )
        )
        stopped = stop_reason_text(figures.stopped, lang)
        if stopped:
            parts.append(stopped)
        lines.append(" · ".join(parts))
        lines.append(
            lang.gettext(
                "learnable accuracy {learnable} · accuracy {accuracy} · loss {loss}",
                learnable=format_percent(figures.learnable_accuracy, lang),
                accuracy=format_percent(figures.accuracy, lang),
                loss=format_number(figures.loss, 3, lang),
            )
        )
        if figures.val_accuracy is not None or figures.val_perplexity is not None:
            lines.append(
                lang.gettext(
                    "held-out accuracy {accuracy} · perplexity {perplexity}",
                    accuracy=format_percent(figures.val_accuracy, lang),
                    perplexity=format_number(figures.val_perplexity, 1, lang),
                )
            )
        else:
            lines.append(
                lang.gettext("No held-out figures: the story is too short to set text aside.")
            )
    lines.append(lang.gettext("Try `/continue` with a few words from the story."))
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
    lang: Language = ENGLISH,
) -> str:
    """A continuation as prose, escaped, with a footer (split it to send it).

    ``lead`` ("…" for a Continue reply) goes before the text; the text is capitalised for
    display (:func:`bot.display.display_prose`), not at the start after a lead. The footer's
    small lines ("-# ", which "Continue this" leaves out) name the prompt's unknown words, if
    any, then the model version and the share from the story.
    """
    footer = "-# " + lang.gettext("model v{version}", version=model_version)
    if original_share is not None:
        footer += " · " + lang.gettext(
            "{percent}% from the story", percent=lang.number(original_share * 100)
        )
    note = unknown_words_text(unknown_words, lang)
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
