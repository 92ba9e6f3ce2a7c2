"""Plain-text rendering of the core's values, shared by every adapter (Discord escapes it)."""

from __future__ import annotations

import json

from bot.core.api import (
    DataDeletion,
    HistorySpan,
    HistoryTraining,
    ImportResult,
    MemberData,
    RetrainReason,
    StoryRemoval,
    StoryStats,
)


def retrain_reason_text(reason: RetrainReason) -> str:
    if reason.member_data:
        return "retraining after a member's data was deleted (/privacy forget)"
    return f"retraining after story #{reason.removed_story_id} ({reason.filename}) was removed"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


def dates_text(span: HistorySpan) -> str:
    first, last = span.first_at[:10], span.last_at[:10]
    return f"from {first}" if first == last else f"from {first} to {last}"


def span_text(span: HistorySpan) -> str:
    return f"{plural(span.messages, 'message')} {dates_text(span)}"


def history_source_text(channel_name: str | None, span: HistorySpan) -> str:
    where = f"#{channel_name}" if channel_name else "this channel"
    return f"the history of {where}: {span_text(span)}"


def history_text(learned: HistoryTraining) -> str:
    """What a history training read and left out (the member's private answer)."""
    left_out = [
        (learned.skipped_bots, "from bots or webhooks"),
        (learned.skipped_commands, "commands"),
        (learned.skipped_opted_out, "from members who opted out"),
        (learned.skipped_empty, "with nothing left after removing links, code and mentions"),
    ]
    parts = [f"{count:,} {what}" for count, what in left_out if count]
    skipped = f" (left out: {', '.join(parts)})" if parts else ""
    return (
        f" Learning {plural(learned.messages, 'message')} of {learned.read:,} read{skipped}, "
        f"{dates_text(learned.span)}."
    )


def member_data_text(data: MemberData) -> str:
    """The summary of ``/privacy mydata`` (the file holds the texts)."""
    stories = {info.story_id for info, _ in data.messages}
    lines = [
        "You have opted out of being learned from here."
        if data.opted_out
        else "You have not opted out: history trainings here may learn your messages.",
        f"Stories you uploaded: {len(data.uploads)}.",
        f"Your messages in stories learned from channel history: {len(data.messages)}"
        + (f" (in {plural(len(stories), 'story', 'stories')})." if stories else "."),
    ]
    if data.uploads or data.messages:
        lines.append("The attached file holds all of it. /privacy forget deletes it.")
    return "\n".join(lines)


def deletion_text(deleted: DataDeletion, who: str | None = None) -> str:
    """``who``: the member it is about, for an operator (None: the member reads it)."""
    whose = "your" if who is None else f"{who}'s"
    if not deleted.channels:
        return f"fabulist keeps no uploads or messages of {who or 'yours'}: nothing to delete."
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


def removal_text(removal: StoryRemoval) -> str:
    parts = [f"Removed story #{removal.story_id} ({removal.filename})."]
    if removal.deleted_versions:
        listed = ", ".join(f"v{v}" for v in removal.deleted_versions)
        parts.append(f"Deleted the model versions trained on it: {listed}.")
    if removal.active_version is not None:
        parts.append(f"Version {removal.active_version} answers now.")
    elif removal.deleted_versions:
        parts.append("No model answers until a new one is trained.")
    if removal.retraining is not None:
        parts.append(
            f"Retraining on the remaining stories (job #{removal.retraining.job_id}) is "
            + ("running." if removal.retraining.state == "running" else "queued.")
        )
    return " ".join(parts)


def import_text(imported: ImportResult) -> str:
    source = f" from #{imported.source_channel}" if imported.source_channel else ""
    count = len(imported.story_ids)
    return (
        f"Imported {count} stor{'y' if count == 1 else 'ies'} and a model{source} "
        f"(exported {imported.exported_at}); it is now version {imported.model_version}."
    )


def stats_lines(stats: StoryStats) -> list[tuple[str, str]]:
    """(label, value) pairs of ``/story stats``, in display order."""
    if stats.stories:
        symbols = ", ".join(f"#{s.story_id} {s.symbols:,}" for s in stats.stories)
        total = sum(s.symbols for s in stats.stories)
        story_line = f"{len(stats.stories)} ({total:,} symbols: {symbols})"
    else:
        story_line = "none"
    if stats.model_versions:
        versions = ", ".join(
            f"v{v}{' (active)' if v == stats.active_version else ''}" for v in stats.model_versions
        )
    else:
        versions = "none"
    vocabulary = "no model" if stats.vocabulary_size is None else f"{stats.vocabulary_size:,} words"
    return [
        ("Stories", story_line),
        ("Vocabulary", vocabulary),
        ("Model versions", versions),
        ("Trainings run", f"{stats.trainings:,}"),
        ("Replies served", f"{stats.replies:,}"),
    ]


def stats_text(stats: StoryStats) -> str:
    return "\n".join(f"{label}: {value}" for label, value in stats_lines(stats))


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
