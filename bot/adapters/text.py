"""Plain-text rendering of the core's values, shared by every adapter (Discord escapes it).

The renderers Discord shows take a ``Language`` (English by default: the CLI and the console);
their messages are the catalogue's (``bot/discord_adapter/locales``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from bot.adapters.language import ENGLISH, Language
from bot.adapters.training_words import epoch_text, stop_reason_text
from bot.core.api import (
    Continuation,
    DataDeletion,
    HistorySpan,
    HistoryTraining,
    ImportResult,
    JobResult,
    MemberData,
    RetrainReason,
    StoryCard,
    StoryInfo,
    StoryRemoval,
    TrainingJob,
    UnknownWord,
)
from bot.core.figures import ModelVersion, StoryStats
from bot.display import count_text, display_prose, known

# Unknown words a reply's note names; more are counted.
NAMED_UNKNOWN_WORDS = 5

# A story whose training did not finish stays stored: an append would train on it.
KEPT_STORY = (
    "Story #{story_id} stays in the channel's stories, so a later append trains on it; "
    "remove it (story remove {story_id}) if it should not."
)


def _retrain_cause(reason: RetrainReason, lang: Language) -> str:
    """Why the bot retrains. A member's data deletion may have rebuilt stories (their messages
    removed from a history story) or removed several, so it names none."""
    if reason.member_data:
        return lang.gettext("after a member's data was deleted (/privacy forget)")
    return lang.gettext(
        "after story #{story} ({filename}) was removed",
        story=reason.removed_story_id,
        filename=reason.filename,
    )


def retrain_reason_text(reason: RetrainReason, lang: Language = ENGLISH) -> str:
    return lang.gettext("retraining {cause}", cause=_retrain_cause(reason, lang))


def vocabulary_text(
    size: int | None,
    cap: int | None,
    covered_share: float | None,
    lang: Language = ENGLISH,
) -> str:
    """``4,455 (cap 10,000, covers 100.0% of the text)``: the card's vocabulary line."""
    if size is None:
        return lang.gettext("unknown")
    details = []
    if cap is not None:
        details.append(lang.gettext("cap {cap}", cap=lang.number(cap)))
    if covered_share is not None:
        details.append(
            lang.gettext("covers {share} of the text", share=lang.percent(covered_share))
        )
    return lang.number(size) + (f" ({', '.join(details)})" if details else "")


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


def dates_text(span: HistorySpan, lang: Language = ENGLISH) -> str:
    first, last = span.first_at[:10], span.last_at[:10]
    if first == last:
        return lang.gettext("from {first}", first=first)
    return lang.gettext("from {first} to {last}", first=first, last=last)


def span_text(span: HistorySpan, lang: Language = ENGLISH) -> str:
    messages = lang.ngettext(
        "{count} message", "{count} messages", span.messages, count=lang.number(span.messages)
    )
    return f"{messages} {dates_text(span, lang)}"


def history_source_text(
    channel_name: str | None, span: HistorySpan, lang: Language = ENGLISH
) -> str:
    if channel_name:
        where = f"#{channel_name}"
        return lang.gettext(
            "the history of {channel}: {span}", channel=where, span=span_text(span, lang)
        )
    return lang.gettext("the history of this channel: {span}", span=span_text(span, lang))


def history_text(learned: HistoryTraining, lang: Language = ENGLISH) -> str:
    """What a history training read and left out (the member's private answer)."""
    system, commands = learned.skipped_system, learned.skipped_commands
    left_out = [
        (
            system,
            lang.ngettext(
                "{count} system message (joins, threads created, pins)",
                "{count} system messages (joins, threads created, pins)",
                system,
                count=lang.number(system),
            ),
        ),
        (
            learned.skipped_bots,
            lang.gettext("{count} from bots or webhooks", count=lang.number(learned.skipped_bots)),
        ),
        (
            commands,
            lang.ngettext(
                "{count} command", "{count} commands", commands, count=lang.number(commands)
            ),
        ),
        (
            learned.skipped_opted_out,
            lang.gettext(
                "{count} from members who opted out", count=lang.number(learned.skipped_opted_out)
            ),
        ),
        (
            learned.skipped_empty,
            lang.gettext(
                "{count} with nothing left after removing links, code, mentions and filtered words",
                count=lang.number(learned.skipped_empty),
            ),
        ),
    ]
    parts = [text for count, text in left_out if count]
    skipped = " " + lang.gettext("(left out: {parts})", parts=", ".join(parts)) if parts else ""
    learning = lang.ngettext(
        "Learning {count} message of {read} read",
        "Learning {count} messages of {read} read",
        learned.messages,
        count=lang.number(learned.messages),
        read=lang.number(learned.read),
    )
    return f" {learning}{skipped}, {dates_text(learned.span, lang)}."


def member_data_text(data: MemberData, lang: Language = ENGLISH) -> str:
    """The summary of ``/privacy mydata`` (the file holds the texts)."""
    stories = {info.story_id for info, _ in data.messages}
    messages = lang.gettext(
        "Your messages in stories learned from channel history: {count}", count=len(data.messages)
    )
    if stories:
        messages += " " + lang.ngettext(
            "(in {count} story).", "(in {count} stories).", len(stories), count=len(stories)
        )
    else:
        messages += "."
    lines = [
        lang.gettext("You have opted out of being learned from here.")
        if data.opted_out
        else lang.gettext(
            "You have not opted out: history trainings here may learn your messages."
        ),
        lang.gettext("Stories you uploaded: {count}.", count=len(data.uploads)),
        messages,
    ]
    if data.uploads or data.messages:
        lines.append(lang.gettext("The attached file holds all of it. /privacy forget deletes it."))
    return "\n".join(lines)


def deletion_text(deleted: DataDeletion, who: str) -> str:
    """``who``: the member it is about, for an operator (English; the member's own answer on
    Discord is ``own_deletion_text``)."""
    whose = f"{who}'s"
    if not deleted.channels:
        return f"fabulist keeps no uploads or messages of {who}: nothing to delete."
    parts = [
        f"Deleted {whose} data in {plural(deleted.channels, 'channel')}: "
        f"{plural(deleted.removed_stories, 'story', 'stories')} removed, "
        f"{plural(deleted.rewritten_stories, 'history story', 'history stories')} rebuilt "
        f"without {whose} messages, "
        f"{plural(deleted.deleted_versions, 'model version')} trained on them deleted."
    ]
    if deleted.retrainings:
        jobs = ", ".join(f"#{job.job_id}" for job in deleted.retrainings)
        parts.append(f"Retraining on what remains: job {jobs}.")
    return " ".join(parts)


def own_deletion_text(deleted: DataDeletion, lang: Language = ENGLISH) -> str:
    """What ``/privacy forget`` deleted, told to the member."""
    if not deleted.channels:
        return lang.gettext("fabulist keeps no uploads or messages of yours: nothing to delete.")
    parts = [
        lang.gettext(
            "Deleted your data in {channels}: {stories} removed, {history} rebuilt without "
            "your messages, {versions} trained on them deleted.",
            channels=lang.ngettext(
                "{count} channel", "{count} channels", deleted.channels, count=deleted.channels
            ),
            stories=lang.ngettext(
                "{count} story",
                "{count} stories",
                deleted.removed_stories,
                count=deleted.removed_stories,
            ),
            history=lang.ngettext(
                "{count} history story",
                "{count} history stories",
                deleted.rewritten_stories,
                count=deleted.rewritten_stories,
            ),
            versions=lang.ngettext(
                "{count} model version",
                "{count} model versions",
                deleted.deleted_versions,
                count=deleted.deleted_versions,
            ),
        )
    ]
    if deleted.retrainings:
        jobs = ", ".join(f"#{job.job_id}" for job in deleted.retrainings)
        parts.append(lang.gettext("Retraining on what remains: job {jobs}.", jobs=jobs))
    return " ".join(parts)


def retraining_label(reason: RetrainReason, lang: Language = ENGLISH) -> str:
    """What a retraining the bot queued itself trains on, as its progress message names it."""
    return lang.gettext("the remaining stories, {cause}", cause=_retrain_cause(reason, lang))


def removal_text(removal: StoryRemoval, lang: Language = ENGLISH) -> str:
    _ = lang.gettext
    parts = [
        _("Removed story #{story} ({filename}).", story=removal.story_id, filename=removal.filename)
    ]
    if removal.deleted_versions:
        listed = ", ".join(f"v{v}" for v in removal.deleted_versions)
        parts.append(_("Deleted the model versions trained on it: {versions}.", versions=listed))
    if removal.active_version is not None:
        parts.append(_("Version {version} answers now.", version=removal.active_version))
    elif removal.deleted_versions:
        parts.append(_("No model answers until a new one is trained."))
    if removal.retraining is not None:
        job = removal.retraining.job_id
        if removal.retraining.state == "running":
            parts.append(_("Retraining on the remaining stories (job #{job}) is running.", job=job))
        else:
            parts.append(_("Retraining on the remaining stories (job #{job}) is queued.", job=job))
    return " ".join(parts)


def import_text(imported: ImportResult) -> str:
    source = f" from #{imported.source_channel}" if imported.source_channel else ""
    count = len(imported.story_ids)
    return (
        f"Imported {count} stor{'y' if count == 1 else 'ies'} and a model{source} "
        f"(exported {imported.exported_at}); it is now version {imported.model_version}."
    )


def stats_lines(stats: StoryStats, lang: Language = ENGLISH) -> list[tuple[str, str]]:
    """(label, value) pairs of ``/story stats``, in display order."""
    _ = lang.gettext
    if stats.stories:
        symbols = ", ".join(f"#{s.story_id} {lang.number(s.symbols)}" for s in stats.stories)
        total = sum(s.symbols for s in stats.stories)
        story_line = _(
            "{count} ({total} symbols: {symbols})",
            count=len(stats.stories),
            total=lang.number(total),
            symbols=symbols,
        )
    else:
        story_line = _("none")
    if stats.model_versions:
        active = " " + _("(active)")
        versions = ", ".join(
            f"v{v}{active if v == stats.active_version else ''}" for v in stats.model_versions
        )
    else:
        versions = _("none")
    if stats.vocabulary_size is None:
        vocabulary = _("no model")
    else:
        vocabulary = _("{count} words", count=lang.number(stats.vocabulary_size))
    return [
        (_("Stories"), story_line),
        (_("Vocabulary"), vocabulary),
        (_("Model versions"), versions),
        (_("Trainings run"), lang.number(stats.trainings)),
        (_("Replies served"), lang.number(stats.replies)),
    ]


def stats_text(stats: StoryStats) -> str:
    return "\n".join(f"{label}: {value}" for label, value in stats_lines(stats))


def card_text(card: StoryCard, label: str) -> str:
    lines = [f"Channel {label}:"]
    if card.has_model:
        lines.append(
            f"  model version {card.model_version}, trained {card.trained_at} on "
            f"{card.story_filename} ({card.stories} stor{'y' if card.stories == 1 else 'ies'})"
        )
        vocabulary = vocabulary_text(
            card.vocabulary_size, card.vocabulary_cap, card.vocabulary_covered_share
        )
        lines.append(
            f"  {card.symbols} symbols, vocabulary {vocabulary}, "
            f"{count_text(card.epochs or 0, 'epoch')} in {card.training_seconds or 0:.1f} s"
        )
        if known(card.learnable_accuracy):
            lines.append(f"  accuracy on learnable windows {card.learnable_accuracy:.1%}")
        if known(card.val_accuracy):
            lines.append(
                f"  held-out accuracy {card.val_accuracy:.1%}, perplexity {card.val_perplexity:.1f}"
            )
    else:
        lines.append("  no trained model yet")
    if card.job is not None:
        job = card.job
        epoch = epoch_text(job.epoch, job.max_epochs, job.expected_epochs)
        lines.append(f"  training job #{job.job_id}: {job.state}, {epoch}")
    if card.notice is not None:
        lines.append(f"  {retrain_reason_text(card.notice)}")
    if card.last_job is not None and card.last_job.state != "done":
        lines.append(f"  last training {card.last_job.state}: {card.last_job.error}")
    return "\n".join(lines)


def stories_text(stories: list[StoryInfo], label: str) -> str:
    if not stories:
        return f"Channel {label} has no stories."
    return "\n".join(
        f"  #{story.story_id} {story.filename} by {story.uploader_name}, "
        f"{story.symbols} symbols, {story.created_at}"
        for story in stories
    )


def versions_text(versions: list[ModelVersion], label: str) -> str:
    if not versions:
        return f"Channel {label} has no model versions."
    lines = []
    for version in versions:
        mark = "*" if version.active else " "
        accuracy = (
            ""
            if version.learnable_accuracy is None
            else f", accuracy {version.learnable_accuracy:.1%}"
        )
        stories = ", ".join(f"#{i}" for i in version.story_ids)
        lines.append(f" {mark}v{version.version} {version.created_at}, stories {stories}{accuracy}")
    return "\n".join(lines)


def channel_stats_text(stats: StoryStats, label: str) -> str:
    lines = stats_text(stats).splitlines()
    return "\n".join([f"Channel {label}:", *(f"  {line}" for line in lines)])


def trained_text(job: TrainingJob, result: JobResult, filename: str) -> str:
    """A training (or the import of an export file) that ended ``done``."""
    if result.imported:
        count = len(job.story_ids)
        return (
            f"Imported {count} stor{'y' if count == 1 else 'ies'} and a model from {filename}; "
            f"it is now version {result.model_version}."
        )
    f = result.figures
    assert f is not None  # a done training has figures
    if known(f.learnable_accuracy):
        accuracy = f", accuracy on learnable windows {f.learnable_accuracy:.1%}"
    elif known(f.val_accuracy):
        accuracy = f", held-out accuracy {f.val_accuracy:.1%}"
    else:
        accuracy = ""
    stopped = stop_reason_text(f.stopped)
    return (
        f"Trained model version {result.model_version} on {filename}: {f.symbols} symbols, "
        f"vocabulary {f.vocabulary_size}, {count_text(f.epochs, 'epoch')} in "
        f"{f.seconds:.1f} s{accuracy}." + (f" It {stopped}." if stopped else "")
    )


def training_failed_text(job: TrainingJob, result: JobResult) -> str:
    lines = [f"Training {result.state}: {result.error}"]
    if job.story_id is not None:
        lines.append(KEPT_STORY.format(story_id=job.story_id))
    return "\n".join(lines)


def continuation_text(continuation: Continuation) -> str:
    """The reply, its share from the story, and on a line of its own the unknown words."""
    share = continuation.original_share
    text = display_prose(continuation.text) + (
        "" if share is None else f"  [{share:.0%} from the story]"
    )
    note = unknown_words_text(continuation.unknown_words)
    return f"{text}\n({note})" if note else text


def _or_list(items: Sequence[str], lang: Language) -> str:
    """'a', 'a or b', 'a, b or c' ("" for none)."""
    if len(items) < 2:
        return "".join(items)
    return lang.gettext("{items} or {last}", items=", ".join(items[:-1]), last=items[-1])


def unknown_words_text(words: Sequence[UnknownWord], lang: Language = ENGLISH) -> str:
    """The note of a reply whose prompt held words the story never uses ("" when none):
    "I didn't know 'mondays': did you mean 'monday'?" (one word), each word with its
    suggestions in brackets when there are several."""
    if not words:
        return ""
    quoted = [f"'{u.word}'" for u in words[:NAMED_UNKNOWN_WORDS]]
    if len(words) > NAMED_UNKNOWN_WORDS:
        others = len(words) - NAMED_UNKNOWN_WORDS
        quoted.append(
            lang.ngettext(
                "{count} other word", "{count} other words", others, count=lang.number(others)
            )
        )
    if len(words) == 1:
        hint = _or_list([f"'{s}'" for s in words[0].suggestions], lang)
        if hint:
            return lang.gettext(
                "I didn't know {word}: did you mean {hint}?", word=quoted[0], hint=hint
            )
        return lang.gettext("I didn't know {word}.", word=quoted[0])
    for i, unknown in enumerate(words[:NAMED_UNKNOWN_WORDS]):
        if unknown.suggestions:
            hint = _or_list([f"'{s}'" for s in unknown.suggestions], lang)
            quoted[i] += " " + lang.gettext("(did you mean {hint}?)", hint=hint)
    return lang.gettext("I didn't know {words}.", words=_or_list(quoted, lang))


def member_data_json(data: MemberData) -> bytes:
    """The file of ``/privacy mydata``: every text fabulist keeps of the member, as JSON."""
    document = {
        "user_id": str(data.user_id),
        "server_id": None if data.guild_id is None else str(data.guild_id),
        "opted_out": data.opted_out,
        "uploaded_stories": [
            {"story_id": info.story_id, "filename": info.filename,
             "uploaded_at": info.created_at, "text": text}
            for info, text in data.uploads
        ],
        "history_messages": [
            {"story_id": info.story_id, "story": info.filename,
             "message_id": str(message.message_id), "sent_at": message.created_at,
             "text": message.text}
            for info, message in data.messages
        ],
    }  # fmt: skip
    return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
