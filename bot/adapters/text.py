"""Plain-text rendering of the core's values, shared by every adapter (Discord escapes it)."""

from __future__ import annotations

from bot.core.api import ImportResult, RetrainReason, StoryRemoval, StoryStats


def retrain_reason_text(reason: RetrainReason) -> str:
    return f"retraining after story #{reason.removed_story_id} ({reason.filename}) was removed"


def retraining_label(reason: RetrainReason) -> str:
    """What a retraining the bot queued itself trains on, as its progress message names it."""
    story = f"#{reason.removed_story_id} ({reason.filename})"
    return f"the remaining stories, after story {story} was removed"


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
