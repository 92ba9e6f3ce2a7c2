"""The store contract for consent and a member's data, on both backends (``store`` fixture)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot.core.history import rebuild_story
from bot.core.library import removal_plan
from bot.core.store import NewModel, NewStory, StoryMessage
from bot.core.validation import JobOptions
from bot.errors import StorageError
from tests.service import test_storage as contract

# The contract suite's fixtures: ``store`` on both backends.
backend, open_store, store = contract.backend, contract.open_store, contract.store

ALICE, BOB, ADMIN = 101, 102, 103
GUILD, OTHER_GUILD = 9, 10


def _history(*messages: tuple[int, str]) -> NewStory:
    story_messages = tuple(
        StoryMessage(1000 + i, author, text, f"2026-01-0{i + 1}T00:00:00+00:00")
        for i, (author, text) in enumerate(messages)
    )
    text = "\n\n".join(m.text for m in story_messages)
    return NewStory(
        "history of #story", ADMIN, "admin", text, "0" * 64, "utf-8", len(text), 9, 8,
        messages=story_messages,
    )  # fmt: skip


def _upload(uploader: int, text: str) -> NewStory:
    return NewStory("up.txt", uploader, f"user{uploader}", text, "1" * 64, "utf-8", 5, 6, 5)


async def _train(store: Any, channel_id: int, story: NewStory, *, guild_id: int = GUILD,
                 append: bool = False) -> tuple[int, tuple[int, ...]]:  # fmt: skip
    job = await store.add_story_and_job(
        channel_id=channel_id, guild_id=guild_id, channel_name="story", story=story,
        append=append, requested_by=ADMIN, requested_by_name="admin", options={},
    )  # fmt: skip
    await store.start_job(job.id)
    model = await store.activate_model(
        job_id=job.id,
        channel_id=channel_id,
        model=NewModel({"units": 1}, ["a", "b"], b"blob-" + story.text.encode(), {}, {}),
        story_ids=job.story_ids,
        keep_versions=3,
    )
    return model.version, job.story_ids


def _rebuild(texts: Any) -> Any:
    return rebuild_story(texts, n_input=3, max_symbols=10_000)


async def _forget(store: Any, user_id: int, guild_id: int | None) -> Any:
    return await store.delete_user_data(
        user_id,
        guild_id,
        policy=lambda facts: removal_plan(facts, JobOptions({}, {}, {}), member_data=True),
        rebuild=_rebuild,
        cancel_message="deleted",
    )


async def test_opt_outs_and_history_setting_are_per_server(store: Any) -> None:
    await store.set_opted_out(GUILD, ALICE, True)
    await store.set_opted_out(GUILD, ALICE, True)  # idempotent
    assert await store.opted_out(GUILD) == {ALICE}
    assert await store.opted_out(OTHER_GUILD) == frozenset()
    await store.set_opted_out(GUILD, ALICE, False)
    assert await store.opted_out(GUILD) == frozenset()
    await store.set_history_enabled(GUILD, True, ADMIN)
    assert await store.history_enabled(GUILD) and not await store.history_enabled(OTHER_GUILD)
    await store.set_history_enabled(GUILD, False, ADMIN)
    assert not await store.history_enabled(GUILD)


async def test_history_story_keeps_messages_and_span(store: Any) -> None:
    story = _history((ALICE, "alice says hello there friends"), (BOB, "bob answers kindly ."))
    _, (story_id,) = await _train(store, 1, story)
    span = (await store.history_spans([story_id]))[story_id]
    assert (span.messages, span.first_at[:10], span.last_at[:10]) == (2, "2026-01-01", "2026-01-02")
    records = await store.user_records(ALICE, GUILD)
    assert [m.text for _, m in records.messages] == ["alice says hello there friends"]
    assert records.uploads == ()  # a history story is not the admin's upload either
    assert (await store.user_records(ADMIN, GUILD)).uploads == ()
    assert await store.user_channels(ALICE, GUILD) == [1]
    assert await store.user_channels(ALICE, OTHER_GUILD) == []


async def test_delete_user_data_rewrites_history_and_removes_uploads(store: Any) -> None:
    history = _history(
        (ALICE, "the secret words of alice are here"),
        (BOB, "bob tells a long story about the sea ."),
        (BOB, "and the sea was calm that night ."),
    )
    await _train(store, 1, _upload(BOB, "an older story by bob ."))
    version, (history_id,) = await _train(store, 1, history)
    await _train(store, 2, _upload(ALICE, "alice uploaded this little story ."))
    await _train(store, 3, _upload(ALICE, "alice in another server ."), guild_id=OTHER_GUILD)
    await store.set_opted_out(GUILD, ALICE, True)

    deletions = {d.channel_id: d for d in await _forget(store, ALICE, GUILD)}

    assert set(deletions) == {1, 2}
    one = deletions[1]
    assert one.rewritten_story_ids == (history_id,) and one.removed_story_ids == ()
    assert one.deleted_versions == (version,) and one.active_version == version - 1
    assert one.retrain_job is not None and one.retrain_job.story_ids == (history_id,)
    assert one.retrain_job.options["reason"]["member_data"] is True
    text = (await store.story_texts([history_id]))[0]
    assert "alice" not in text and "bob tells a long story" in text
    assert (await store.history_spans([history_id]))[history_id].messages == 2
    two = deletions[2]
    assert len(two.removed_story_ids) == 1 and two.retrain_job is None
    assert await store.list_stories(2) == [] and await store.active_model(2) is None
    assert (await store.user_records(ALICE, None)).messages == ()
    assert [s.filename for s, _ in (await store.user_records(ALICE, None)).uploads] == ["up.txt"]
    assert await store.opted_out(GUILD) == {ALICE}  # the opt-out protects them: it stays
    assert all(j.requested_by != ALICE for j in await store.jobs(1))


async def test_delete_user_data_ends_open_jobs_and_their_model_is_refused(
    open_store: Any,
) -> None:
    """Another process's training on the member's data ends in the deletion's transaction; its
    model, finished afterwards, is never stored."""
    here, elsewhere = await open_store(), await open_store()
    history = _history((ALICE, "alice wrote this line ."), (BOB, "bob wrote about the sea ."))
    await _train(here, 1, history)
    running = await elsewhere.add_story_and_job(
        channel_id=1, guild_id=GUILD, channel_name="story", story=history, append=False,
        requested_by=ADMIN, requested_by_name="admin", options={},
    )  # fmt: skip
    await elsewhere.start_job(running.id)
    untouched = await elsewhere.add_story_and_job(
        channel_id=2, guild_id=GUILD, channel_name="other", story=_upload(ALICE, "a b c d ."),
        append=False, requested_by=ADMIN, requested_by_name="admin", options={},
    )  # fmt: skip

    await _forget(here, BOB, GUILD)

    ended = await elsewhere.job(running.id)
    assert ended is not None and ended.state == "cancelled" and ended.error == "deleted"
    assert await elsewhere.still_open([running.id, untouched.id]) == {untouched.id}
    with pytest.raises(StorageError, match="ended by another process"):
        await elsewhere.activate_model(
            job_id=running.id,
            channel_id=1,
            model=NewModel({"units": 1}, ["a", "b"], b"blob-with-bob", {}, {}),
            story_ids=running.story_ids,
            keep_versions=3,
        )
    assert all(m.job_id != running.id for m in await here.list_models(1))


async def test_history_story_left_empty_is_removed(store: Any) -> None:
    version, (story_id,) = await _train(store, 1, _history((ALICE, "only alice wrote here .")))
    (deletion,) = await _forget(store, ALICE, None)
    assert deletion.removed_story_ids == (story_id,) and deletion.rewritten_story_ids == ()
    assert deletion.deleted_versions == (version,) and deletion.retrain_job is None
    assert await store.list_stories(1) == [] and await store.list_models(1) == []


async def test_forgotten_text_is_not_in_the_sqlite_file(tmp_path: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("looks at SQLite's files")
    from bot.store.sqlite import SqliteStoryStore

    path = tmp_path / "db.sqlite3"
    sqlite_store = await SqliteStoryStore.open(path)
    secret = "zanzibar quokka whispers moonlit"
    history = _history((ALICE, secret), (BOB, "bob speaks plainly about boats ."))
    await _train(sqlite_store, 1, history)
    await _forget(sqlite_store, ALICE, GUILD)
    await sqlite_store.close()
    for file in sorted(tmp_path.glob("db.sqlite3*")):  # noqa: ASYNC240 (a test's few small files)
        assert secret.encode() not in file.read_bytes(), file.name
    raw = sqlite3.connect(path)
    assert (
        raw.execute("SELECT count(*) FROM story_messages WHERE author_id = ?", (ALICE,)).fetchone()[
            0
        ]
        == 0
    )
    raw.close()
