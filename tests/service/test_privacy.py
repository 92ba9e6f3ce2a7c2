"""Learning from history and a member's data through the facade (real SQLite, real trainings),
and the cleaning rules; the CLI's forget-user and user-data on the same database."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile

import pytest

from bot.cli import main
from bot.core.api import ContinueOptions, HistoryMessage, TrainOptions
from bot.core.history import MENTION_SYMBOL, clean_message, rebuild_story, select_messages
from bot.core.service import StoryService
from bot.errors import InvalidUpload, NotAllowed
from tests.service.conftest import ADMIN, channel

GUILD, OTHER = 100, 200
ALICE, BOB, CAROL, ROBOT = 11, 12, 13, 14
BOB_SENTENCE = "the old mouse whispered secrets to the purple walrus ."
ARTICLE = (
    "long ago , the mice had a general council . then the old mouse said it is easy to "
    "propose impossible remedies . the mice looked at one another and nobody spoke ."
)


def _message(i: int, author: int, content: str, **flags: bool) -> HistoryMessage:
    return HistoryMessage(1000 + i, author, content, f"2026-03-{1 + i % 28:02d}T12:00:00+00:00",
                          **flags)  # fmt: skip


def _history() -> list[HistoryMessage]:
    lines = [(ALICE, s.strip() + " .") for s in ARTICLE.split(" . ") if s.strip()]
    lines += [(BOB, BOB_SENTENCE)] * 3
    lines += [(CAROL, "carol hums a xylophone tune ."), (ALICE, "!skip quasar")]
    messages = [_message(i, a, c) for i, (a, c) in enumerate(lines)]
    messages.append(_message(len(lines), ROBOT, "beep zorblax", author_is_bot=True))
    messages.append(_message(len(lines) + 1, ALICE, "hooked gargoyle", webhook=True))
    return messages[::-1]  # as read: newest first


def test_cleaning_removes_links_code_mentions_and_emoji() -> None:
    assert clean_message(
        "hi <@123> and <@!4> <@&5> in <#6> @everyone see https://x.y/z <https://a.b> "
        "www.c.d `code` <:smile:77>"
    ) == f"hi {MENTION_SYMBOL} and {MENTION_SYMBOL} {MENTION_SYMBOL} in {MENTION_SYMBOL} " + (
        f"{MENTION_SYMBOL} see"
    )
    assert clean_message("```py\nprint(1)\n```") is None
    assert clean_message("<@1> https://only.links") is None
    assert clean_message("first line\n\n  second   line ") == "first line\nsecond line"


def test_selection_keeps_people_and_counts_what_it_leaves_out() -> None:
    selected = select_messages(_history(), prefixes=("!",), opted_out={CAROL})
    assert [m.author_id for m in selected.messages] == [ALICE, ALICE, ALICE, BOB, BOB, BOB]
    assert selected.messages[0].message_id < selected.messages[-1].message_id  # oldest first
    assert (selected.skipped_bots, selected.skipped_commands, selected.skipped_opted_out) == (
        2, 1, 1,
    )  # fmt: skip


def test_every_message_read_is_learned_or_counted_once_as_left_out() -> None:
    # Joins and a thread created, as Discord writes them: system messages. Carol's join counts
    # as a system message, not as an opted-out member's message.
    system = [_message(40, ALICE, "", system=True), _message(41, CAROL, "", system=True),
              _message(42, BOB, "", system=True)]  # fmt: skip
    read = _history() + system
    selected = select_messages(read, prefixes=("!",), opted_out={CAROL})
    assert selected.skipped_system == 3 and selected.read == len(read)
    assert len(selected.messages) == 6  # the system messages are not learned
    left_out = (selected.skipped_system, selected.skipped_bots, selected.skipped_commands,
                selected.skipped_opted_out, selected.skipped_empty)  # fmt: skip
    assert len(selected.messages) + sum(left_out) == selected.read


def test_rebuild_needs_enough_to_learn() -> None:
    assert rebuild_story([], n_input=3, max_symbols=100) is None
    assert rebuild_story(["too short"], n_input=3, max_symbols=100) is None
    rebuilt = rebuild_story(["one two three four", "five six ."], n_input=3, max_symbols=100)
    # a paragraph break between two messages is a symbol of its own
    assert rebuilt is not None and rebuilt.symbols == 8 and rebuilt.text.count("\n") == 2


async def test_history_needs_opt_in_and_admin(service: StoryService) -> None:
    here = channel(1, GUILD)
    with pytest.raises(NotAllowed, match="not allowed learning from channel history"):
        await service.history_request(here, ADMIN, None, TrainOptions())
    await service.set_history_learning(GUILD, ADMIN, True)
    request = await service.history_request(here, ADMIN, 10, TrainOptions())
    assert request.limit == 10 and request.opted_out == frozenset()
    with pytest.raises(InvalidUpload, match="None of the 1 messages"):
        await service.train_history(here, ADMIN, [_message(0, ROBOT, "x", author_is_bot=True)],
                                    TrainOptions())  # fmt: skip


async def test_forget_retrains_without_the_member_and_consent_is_per_server(
    service: StoryService,
) -> None:
    here, there = channel(1, GUILD), channel(2, OTHER)
    for guild in (GUILD, OTHER):
        await service.set_history_learning(guild, ADMIN, True)
    await service.set_opted_out(GUILD, CAROL, True)
    learned = await service.train_history(here, ADMIN, _history(), TrainOptions(seed=1))
    assert learned.skipped_opted_out == 1 and learned.messages == 6
    assert (await service.wait_for_job(learned.job.job_id)).state == "done"
    elsewhere = await service.train_history(there, ADMIN, _history(), TrainOptions(seed=1))
    assert elsewhere.skipped_opted_out == 0  # carol opted out of the first server only
    await service.wait_for_job(elsewhere.job.job_id)
    before = await service.continue_story(here, "the old mouse", _options())
    assert "whispered secrets to the purple walrus" in before.text, before.text
    card = await service.story_card(here)
    assert card.history is not None and card.history.messages == 6

    data = await service.member_data(BOB, GUILD)
    assert [m.text for _, m in data.messages] == [BOB_SENTENCE] * 3

    deleted = await service.delete_user_data(BOB, GUILD)
    assert (deleted.channels, deleted.rewritten_stories, deleted.deleted_versions) == (1, 1, 1)
    [retraining] = deleted.retrainings
    assert (await service.wait_for_job(retraining.job_id)).state == "done"
    after = await service.continue_story(here, "the old mouse", _options())
    assert "walrus" not in after.text and "whispered" not in after.text, after.text
    assert (await service.story_card(here)).history.messages == 3  # type: ignore[union-attr]
    assert (await service.member_data(BOB, GUILD)).messages == ()
    assert len((await service.member_data(BOB, None)).messages) == 3  # the other server's
    _, export = await service.export_channel(here)
    assert b"walrus" not in export  # the zip stores text compressed: check its entries too
    with zipfile.ZipFile(io.BytesIO(export)) as archive:
        assert not any(b"walrus" in archive.read(name) for name in archive.namelist())

    # The CLI on the same database: everything of bob everywhere (the other server's story).
    database = service.config.storage.database
    code, text = await _cli("--db", str(database), "user-data", str(BOB), "--server", str(OTHER))
    assert code == 0 and len(json.loads(text)["history_messages"]) == 3, text
    code, text = await _cli("--db", str(database), "forget-user", str(BOB), "--yes")
    assert code == 0 and "Deleted user 12's data in 1 channel" in text, text
    assert "Retraining #" in text and " done." in text
    assert (await service.member_data(BOB, None)).messages == ()


def _options() -> ContinueOptions:
    return ContinueOptions(length=6, temperature=0.0)


async def _cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await asyncio.to_thread(main, list(args), out)  # asyncio.run needs its own thread
    return code, out.getvalue()


async def test_forget_during_the_channels_first_training_trains_again_without_the_member(
    service: StoryService,
) -> None:
    here = channel(1, GUILD)
    await service.set_history_learning(GUILD, ADMIN, True)
    first = await service.train_history(here, ADMIN, _history(), TrainOptions(seed=1))
    # At once: the first training is queued or running (its trainer process starts in seconds),
    # and the channel has no model yet.
    deleted = await service.delete_user_data(BOB, GUILD)
    assert (await service.wait_for_job(first.job.job_id)).state == "cancelled"
    assert deleted.channels == 1 and deleted.rewritten_stories == 1
    [retraining] = deleted.retrainings  # the cancel message says "The channel retrains without it."
    assert retraining.story_ids == first.job.story_ids
    assert (await service.wait_for_job(retraining.job_id)).state == "done"
    after = await service.continue_story(here, "the old mouse", _options())
    assert "walrus" not in after.text and "whispered" not in after.text, after.text
