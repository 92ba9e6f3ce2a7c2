"""End to end: the real bot process (``python -m bot --config X run``) against the fake Discord.

One fake Discord and one bot process serve the whole module (starting TensorFlow workers is the
expensive part), so the tests run in file order and build on each other: #story is trained once
on the article's story, then continued, carded, and finally forgotten; #other never has a model
until the cancel test trains (and cancels) a larger story there.
"""

# ruff: noqa: ASYNC109  # the harness API takes explicit timeouts so failures say what was awaited

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from tests.fake_discord import FakeMessage, make_bot_process
from tests.fake_discord.fixtures import BotEnv, module_bot_env
from tests.fake_discord.handles import InteractionHandle

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
ARTICLE = REPO / "data" / "belling-the-cat.txt"
CORPORA = REPO / "data" / "corpora"
CANCEL = "fabulist:cancel:"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# As users see it: the model's lower-case text, with sentence starts capitalised for display.
OPENING = (
    "Had a general council to consider what measures they could take to outwit their common "
    "enemy, the cat."
)
# Article-size defaults (512 units) learn the story in a few seconds; the worker's TensorFlow
# import and the first compile add a few more on a loaded 2-core machine.
TRAIN_TIMEOUT = 120.0
STORY_BYTES = 100_000
BOT_CONFIG = {
    "cooldowns": {"continue_seconds": 0.0},
    "limits": {"story_bytes": STORY_BYTES},
    "workers": {"count": 1},
}


Env = BotEnv


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    async with module_bot_env(
        tmp_path_factory,
        "discord-bot",
        BOT_CONFIG,
        command_names=("train", "continue"),
        dump_messages=True,
    ) as started:
        yield started


@pytest.fixture(autouse=True)
def _clean_api_use(env: Env) -> Iterator[None]:
    """Fail the test that caused it, not only the module teardown."""
    yield
    env.fake.assert_no_unknown_requests()
    env.fake.assert_no_violations()


async def _ephemeral_reply(handle: InteractionHandle, timeout: float = 15.0) -> FakeMessage:
    reply = await handle.wait_reply(timeout)
    assert reply.ephemeral, f"expected an ephemeral reply, got {reply.content!r}"
    assert not reply.pings_anyone()
    return reply


async def _train(
    env: Env, channel_name: str, filename: str, data: bytes, **options: object
) -> tuple[InteractionHandle, FakeMessage]:
    """/train as the admin; returns the interaction and the channel progress message."""
    channel = env.world.channel if channel_name == "story" else env.world.other_channel
    attachment = env.fake.add_attachment(filename, data, channel=channel)
    handle = await env.fake.send_slash_command(
        "train", {"story": attachment, **options}, user=env.world.admin, channel=channel
    )
    reply = await _ephemeral_reply(handle, 30.0)
    assert "Training job #" in reply.content
    progress = await env.fake.wait_for_message(
        lambda m: (
            m.kind == "channel" and any(c.startswith("fabulist:cancel:") for c in m.custom_ids())
        ),
        channel=channel,
        timeout=15.0,
    )
    return handle, progress


def _assert_throttled(env: Env, message: FakeMessage) -> None:
    """Progress edits are throttled to one per ~2 s (the final result edit may follow sooner).

    Counted over the whole training rather than gap by gap: on a loaded machine one slow edit
    request can arrive at the fake just before the next, so single gaps may look short. An
    unthrottled message (an edit per epoch or per report) would still far exceed the bound.
    """
    edits = [
        r.at
        for r in env.fake.requests_to("PATCH /channels/{channel_id}/messages/{message_id}")
        if r.path.endswith(f"/{message.id}")
    ]
    progress = edits[:-1]
    if len(progress) < 2:
        return
    span = progress[-1] - progress[0]
    gaps = [later - earlier for earlier, later in itertools.pairwise(progress)]
    assert len(progress) <= 2 + span / 1.5, gaps


async def _continue(env: Env, prompt: str, **options: object) -> InteractionHandle:
    return await env.fake.send_slash_command(
        "continue", {"prompt": prompt, **options}, user=env.world.member, channel=env.world.channel
    )


# -- tests, in order ---------------------------------------------------------------------------


async def test_commands_are_synced_to_the_dev_guild(env: Env) -> None:
    commands = await env.fake.wait_for_commands(env.world.guild)
    assert {"train", "continue", "story", "forget", "cancel"} <= set(commands)
    assert not env.fake.commands.get(None), "run must not sync globally"


async def test_the_generation_kernel_is_ready_before_the_gateway_connects(env: Env) -> None:
    """The first /continue does not pay numba's import and cache read (~0.6 s, ~0.1 s of it
    holding the GIL): the service loads the int8 kernel before the bot connects."""
    log = await env.bot.wait_for_log("has connected to Gateway", 30.0)
    kernel = log.find("generation: int8 kernel ready")
    connected = log.find("has connected to Gateway")
    assert 0 <= kernel < connected, env.bot.log_tail()


async def test_continue_in_a_channel_with_no_model(env: Env) -> None:
    handle = await env.fake.send_slash_command(
        "continue",
        {"prompt": "had a general"},
        user=env.world.member,
        channel=env.world.other_channel,
    )
    reply = await _ephemeral_reply(handle)
    assert "/train" in reply.content


async def test_train_is_denied_without_manage_channels(env: Env) -> None:
    attachment = env.fake.add_attachment("story.txt", ARTICLE.read_bytes())
    handle = await env.fake.send_slash_command(
        "train", {"story": attachment}, user=env.world.member, channel=env.world.channel
    )
    reply = await _ephemeral_reply(handle)
    assert "Manage Channels" in reply.content
    # Refused before any download: the fake CDN never served the file.
    assert _downloads(env, attachment.url) == 0


def _downloads(env: Env, url: str) -> int:
    path = urlsplit(url).path
    assert path.startswith("/attachments/")
    return len([r for r in env.fake.requests if r.path == path])


async def test_oversize_attachment_is_refused_from_its_metadata(env: Env) -> None:
    attachment = env.fake.add_attachment(
        "huge.txt", ARTICLE.read_bytes(), declared_size=2 * STORY_BYTES
    )
    handle = await env.fake.send_slash_command(
        "train", {"story": attachment}, user=env.world.admin, channel=env.world.channel
    )
    reply = await _ephemeral_reply(handle)
    assert "limit" in reply.content
    assert _downloads(env, attachment.url) == 0


async def test_download_larger_than_its_metadata_is_refused(env: Env) -> None:
    data = b"the cat . " * (STORY_BYTES // 5)
    attachment = env.fake.add_attachment("liar.txt", data, declared_size=1000)
    handle = await env.fake.send_slash_command(
        "train", {"story": attachment}, user=env.world.admin, channel=env.world.channel
    )
    reply = await _ephemeral_reply(handle)
    assert "limit" in reply.content
    assert _downloads(env, attachment.url) == 1


async def test_attachment_that_cannot_be_downloaded_gets_a_friendly_reply(env: Env) -> None:
    attachment = env.fake.add_attachment("gone.txt", ARTICLE.read_bytes())
    del env.fake.attachments_by_id[attachment.id]  # the CDN answers 404, as for an expired URL
    handle = await env.fake.send_slash_command(
        "train", {"story": attachment}, user=env.world.admin, channel=env.world.channel
    )
    reply = await _ephemeral_reply(handle)
    assert "couldn't download the attachment" in reply.content, reply.content
    assert "reference code" not in reply.content
    assert _downloads(env, attachment.url) == 1


async def test_time_budget_over_the_servers_limit_is_refused(env: Env) -> None:
    attachment = env.fake.add_attachment("story.txt", ARTICLE.read_bytes())
    handle = await env.fake.send_slash_command(
        "train",
        {"story": attachment, "max_seconds": 100_000},
        user=env.world.admin,
        channel=env.world.channel,
    )
    reply = await _ephemeral_reply(handle)
    shown = reply.content.replace("\\", "")  # as Discord renders the escaped message
    assert "max_seconds must be a number from 1 to 600" in shown, reply.content


async def test_train_article_story_to_finished_message_with_plot(env: Env) -> None:
    _, progress = await _train(env, "story", "belling-the-cat.txt", ARTICLE.read_bytes(), seed=1)
    done = await env.fake.wait_until(
        lambda: progress if progress.content.startswith("**Finished**") else None,
        TRAIN_TIMEOUT,
        "the finished training message",
    )
    text = done.content
    assert "belling-the-cat.txt" in text
    assert re.search(r"\b2\d\d symbols\b", text), text
    assert "vocabulary" in text and "learnable accuracy" in text
    assert not done.custom_ids(), "the Cancel button must go once training ended"
    _assert_throttled(env, done)
    plot = done.file("training.png")
    assert plot.data.startswith(PNG_SIGNATURE)
    assert not done.pings_anyone()


async def test_continue_had_a_general_gives_the_articles_opening(env: Env) -> None:
    handle = await _continue(env, "had a general", temperature=0.0)  # the article's, exact
    reply = await handle.wait_reply(15.0)
    assert not reply.ephemeral
    assert reply.content.startswith(OPENING), reply.content
    assert {"Reroll", "Continue"} <= {c.get("label") for c in reply.iter_components()}
    assert reply.allowed_mentions is not None and not reply.pings_anyone()


async def test_a_slow_reply_is_acknowledged_first_then_sent(env: Env) -> None:
    """A reply not ready within the bot's acknowledgement window (1 s) gets Discord's
    "thinking" response first, then replaces it; the bot waits the window out before that (an
    acknowledgement is one more call to Discord). Slow for certain: the reply counts itself in
    the database, whose write lock this test holds for longer than the window."""
    db_path = env.bot.db_path
    assert db_path is not None
    holder = sqlite3.connect(db_path, timeout=30.0, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        handle = await _continue(env, "had a general", temperature=0.0)
        await asyncio.sleep(2.0)  # longer than the window; within Discord's 3 s to acknowledge
        holder.execute("COMMIT")
    finally:
        holder.close()
    reply = await handle.wait_reply(30.0)
    assert handle.deferred, handle.response_type
    assert handle.callback_request is not None
    assert handle.callback_request.at - handle.created_at >= 0.9
    assert not reply.ephemeral
    assert reply.content.startswith(OPENING), reply.content


async def test_continue_button_extends_from_the_last_words(env: Env) -> None:
    handle = await _continue(env, "had a general", length=8, temperature=0.0)
    reply = await handle.wait_reply(15.0)
    more = next(c for c in reply.custom_ids() if c.startswith("fabulist:more:"))
    click = await env.fake.send_component_click(reply, more, env.world.member)
    extended = await click.wait_reply(15.0)
    assert not extended.ephemeral
    # "had a general council to consider what" + 8 -> continues "... could take to outwit"
    # It restarts from the last few words only, so the beginning is not repeated.
    assert extended.content.startswith("…"), extended.content
    assert "had a" not in extended.content
    assert "outwit their common enemy" in extended.content, extended.content


async def test_reroll_button_samples_a_new_continuation(env: Env) -> None:
    handle = await _continue(env, "the mice")
    reply = await handle.wait_reply(15.0)
    reroll = next(c for c in reply.custom_ids() if c.startswith("fabulist:reroll:"))
    click = await env.fake.send_component_click(reply, reroll, env.world.admin)
    rerolled = await click.wait_reply(15.0)
    assert not rerolled.ephemeral
    assert rerolled.content.startswith("The mice")


async def test_unknown_words_are_named_under_a_continuation(env: Env) -> None:
    """Words the story never uses do not refuse a prompt (issue 23): the reply continues from
    the known words and a small line names the others, with suggestions."""
    handle = await _continue(env, "i hate mondays")
    reply = await handle.wait_reply(15.0)
    assert not reply.ephemeral and not reply.pings_anyone()
    body, note, footer = reply.content.rsplit("\n", 2)
    # The prompt, then a sampled continuation (which may begin with punctuation).
    assert body.startswith("I hate mondays") and len(body.split()) > 3, reply.content
    assert note.startswith("-# I didn't know 'hate'") and "'mondays'" in note, note
    assert footer.startswith("-# model v1")
    assert {"Reroll", "Continue"} <= {c.get("label") for c in reply.iter_components()}
    handle = await _continue(env, "had a generel")
    reply = await handle.wait_reply(15.0)
    assert not reply.ephemeral
    assert "\n-# I didn't know 'generel': did you mean 'general'" in reply.content, reply.content


async def test_autocomplete_offers_vocabulary_words(env: Env) -> None:
    handle = await env.fake.send_autocomplete(
        "continue",
        {"prompt": "had a gen"},
        "prompt",
        user=env.world.member,
        channel=env.world.channel,
    )
    choices = await handle.wait_autocomplete()
    values = [c["value"] for c in choices]
    assert "had a general" in values, values


async def test_story_card(env: Env) -> None:
    handle = await env.fake.send_slash_command(
        "story", {}, subcommand="show", user=env.world.member, channel=env.world.channel
    )
    reply = await handle.wait_reply(15.0)
    text = reply.text()
    assert "#story" in text
    assert "Story: belling-the-cat.txt" in text
    assert "Model version: v1" in text
    assert "Uploaded by: Alice" in text
    assert "Symbols: 204" in text
    # The vocabulary cap and the share of the text it covers.
    assert "Vocabulary: 112 (cap 20,000, covers 100.0% of the text)" in text, text
    assert "Training: idle" in text


async def test_second_train_while_one_runs_and_cancel(env: Env) -> None:
    # A slice of a book: an epoch takes a few seconds, so the job is surely running when
    # cancelled, and the first live progress does not keep the suite waiting long.
    book = (CORPORA / "fables-of-aesop-jacobs.txt").read_bytes()[:30_000]
    book = book[: book.rindex(b"\n")]
    handle, progress = await _train(env, "other", "aesop.txt", book)
    # A second /train in the same channel while the first is queued or running.
    again = env.fake.add_attachment("again.txt", ARTICLE.read_bytes())
    second = await env.fake.send_slash_command(
        "train", {"story": again}, user=env.world.admin, channel=env.world.other_channel
    )
    busy = await _ephemeral_reply(second, 30.0)
    cancel_id = next(c for c in progress.custom_ids() if c.startswith(CANCEL))
    assert f"job #{cancel_id.removeprefix(CANCEL)}" in busy.content, busy.content
    # Wait for live progress, then a member who did not start it may not cancel it.
    await env.fake.wait_until(
        lambda: progress if re.search(r"epoch [1-9]", progress.content) else None,
        TRAIN_TIMEOUT,
        "live training progress",
    )
    assert re.search(r"loss \d+\.\d+ · accuracy \d+\.\d%", progress.content), progress.content
    assert re.search(r"about \S.* left|estimating the time left", progress.content), (
        progress.content
    )
    denied = await env.fake.send_component_click(progress, cancel_id, env.world.member)
    refusal = await _ephemeral_reply(denied)
    assert "cancel" in refusal.content.lower()
    # The uploader may.
    click = await env.fake.send_component_click(progress, cancel_id, env.world.admin)
    ack = await _ephemeral_reply(click)
    assert "Cancelling" in ack.content
    await env.fake.wait_until(
        lambda: progress if progress.content.startswith("**Cancelled**") else None,
        60.0,
        "the cancelled training message",
    )
    assert not progress.custom_ids()
    _assert_throttled(env, progress)
    # The channel keeps its model-less state: the cancelled job activated nothing.
    handle = await env.fake.send_slash_command(
        "continue", {"prompt": "the"}, user=env.world.member, channel=env.world.other_channel
    )
    assert "/train" in (await _ephemeral_reply(handle)).content


async def test_story_markup_and_mentions_cannot_format_or_ping(env: Env) -> None:
    line = (
        "the bard said **loud** words to @everyone and @here and <@123456789012345678> , "
        "then ||hid|| the `code` and ~~struck~~ it . "
    )
    _, progress = await _train(env, "other", "markup.txt", (line * 15).encode(), seed=2)
    await env.fake.wait_until(
        lambda: progress if progress.content.startswith("**Finished**") else None,
        TRAIN_TIMEOUT,
        "the finished training message",
    )
    handle = await env.fake.send_slash_command(
        "continue",
        {"prompt": "the bard said", "length": 60},
        user=env.world.member,
        channel=env.world.other_channel,
    )
    reply = await handle.wait_reply(15.0)
    body = reply.content.rsplit("\n-# ", 1)[0]
    assert "everyone" in body and "`" in body and "|" in body, body
    assert not re.search(r"(?<!\\)[*_`|~]", body), body
    assert reply.allowed_mentions == {"parse": []}
    assert not reply.pings_anyone()
    assert "@everyone" not in body and "@here" not in body


async def test_sync_command_registers_globally_and_exits(env: Env, tmp_path: Path) -> None:
    identifies = env.fake.identify_count
    proc = make_bot_process(env.fake, tmp_path, {}, args=("sync",), name="sync")
    await proc.start(wait_identify=False, wait_commands_for=False)
    code = await proc.wait_exit(60.0)
    assert code == 0, proc.log_tail()
    expected = [
        "Continue this",
        "cancel",
        "continue",
        "filter",
        "forget",
        "privacy",
        "story",
        "train",
    ]
    assert (None, sorted(expected)) in [
        (guild, sorted(names)) for guild, names in env.fake.command_syncs
    ]
    assert env.fake.identify_count == identifies, "sync must not open a gateway session"


async def test_forget_needs_the_right_and_a_confirmation(env: Env) -> None:
    handle = await env.fake.send_slash_command(
        "forget", {}, user=env.world.member, channel=env.world.channel
    )
    await _ephemeral_reply(handle)
    handle = await env.fake.send_slash_command(
        "forget", {}, user=env.world.admin, channel=env.world.channel
    )
    question = await _ephemeral_reply(handle)
    confirm = next(
        c["custom_id"] for c in question.iter_components() if c.get("label") == "Forget everything"
    )
    click = await env.fake.send_component_click(question, confirm, env.world.admin)
    await click.wait_response()
    await env.fake.wait_until(
        lambda: question if "deleted" in question.content else None, 15.0, "forget confirmation"
    )
    after = await _continue(env, "had a general")
    reply = await _ephemeral_reply(after)
    assert "/train" in reply.content
