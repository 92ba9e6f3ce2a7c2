"""The real bot process against the fake Discord: bad input, faults, load and secrets.

One fake Discord and one bot process (2 training workers, tiny models) serve the module; the
tests run in file order. Before the bot starts, ten load channels get a stored model through the
real ``StoryStore`` (numpy weights: the storage and generation paths are real, only TensorFlow's
training is skipped there); #story is trained for real with ``/train``.

Every refused input must get a friendly, ephemeral reply that pings nobody, and the database
snapshot (row counts, active models, story/model hashes, job states) must not change. Words
the story never uses are no bad input: they get a public reply naming them (issue 23).
"""

# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import math
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from bot.store.sqlite import SqliteStoryStore as StoryStore
from tests.fake_discord import BotProcess, FakeDiscord, FakeMessage, World, make_bot_process
from tests.fake_discord.handles import InteractionHandle
from tests.fake_discord.models import FakeChannel, FakeUser
from tests.reliability.conftest import STORY, Ledger, integrity, snapshot, target_line
from tests.reliability.helpers import friendly, seed_model
from tests.service.conftest import long_story
from tests.support import prose_story

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GsEcReT.fabulist-reliability-token-0123456789abcdef"
STORY_BYTES = 2 * (1 << 20)
LOAD_CHANNELS = 10
LOAD_REQUESTS = 50
CANCEL = "fabulist:cancel:"
BOT_CONFIG: dict[str, Any] = {
    "cooldowns": {"continue_seconds": 0.0},
    "limits": {"story_bytes": STORY_BYTES},
    "workers": {"count": 2},
    "training": {"units": 16, "embedding_dim": 16, "max_epochs": 300, "max_seconds": 120.0},
}
MARKUP = (
    "the bard said **loud** words to @everyone and @here and <@123456789012345678> and "
    "<@&234567890123456789> in <#345678901234567890> , then ||hid|| the `code` and ~~struck~~ "
    "it . ``` fenced ``` and [a link](https://example.com) __under__ *it* > quoted # head "
    "-# small @ everyone < @ 1 > . "
)


@dataclass
class Env:
    fake: FakeDiscord
    world: World
    bot: BotProcess
    db: Path
    load_channels: list[FakeChannel]
    train_channels: list[FakeChannel]
    users: list[FakeUser]
    timings: list[float] = field(default_factory=list)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    fake = FakeDiscord(token=TOKEN)
    world = fake.default_world()
    loads = [fake.add_channel(world.guild, f"load-{i}") for i in range(LOAD_CHANNELS)]
    trains = [fake.add_channel(world.guild, f"train-{i}") for i in range(2)]
    users = [fake.add_member(world.guild, f"reader{i}") for i in range(5)]
    await fake.start()
    tmp_path = tmp_path_factory.mktemp("reliability-discord")
    db = tmp_path / "fabulist.sqlite3"
    store = await StoryStore.open(db)
    for channel in loads:
        await seed_model(
            store, channel.id, STORY.decode(), guild_id=world.guild.id, name=channel.name
        )
    await store.close()
    config = {
        "discord": {"dev_guild_id": world.guild.id},
        "storage": {"database": str(db)},
        **BOT_CONFIG,
    }
    bot = make_bot_process(fake, tmp_path, config)
    try:
        await bot.start(wait_commands_for=world.guild.id, command_names=["train", "continue"])
        yield Env(fake, world, bot, db, loads, trains, users)
    finally:
        await bot.stop()
        print(f"----- {bot.log_path} -----\n{bot.log_tail(200)}")
        await fake.stop()


@pytest.fixture(autouse=True)
def _clean_api_use(env: Env) -> Iterator[None]:
    """After each test (the last one too), the bot used only known routes, within the rules:
    a violation is blamed on the test that caused it."""
    yield
    env.fake.assert_no_unknown_requests()
    env.fake.assert_no_violations()


def _downloads(env: Env, url: str) -> int:
    path = urlsplit(url).path
    return len([r for r in env.fake.requests if r.path == path])


async def _refused(
    env: Env,
    ledger: Ledger,
    what: str,
    send: Callable[[], Awaitable[InteractionHandle]],
    match: str | None = None,
    timeout: float = 30.0,
) -> FakeMessage:
    """Send one bad input; it must get a friendly private reply and change nothing stored."""
    before = snapshot(env.db)
    handle = await send()
    reply = await handle.wait_reply(timeout)
    await asyncio.sleep(0.05)  # anything the bot would still write lands in the snapshot
    after = snapshot(env.db)
    text = reply.text()
    ok = (
        reply.ephemeral
        and friendly(text)
        and not reply.pings_anyone()
        and before == after
        and (match is None or re.search(match, text) is not None)
    )
    ledger.record("bad input", ok, f"discord {what}: {text!r} unchanged={before == after}")
    assert ok, (what, text, reply.ephemeral, before == after)
    return reply


async def _train(
    env: Env, channel: FakeChannel, filename: str, data: bytes, **options: Any
) -> FakeMessage:
    """/train as the admin; returns the channel progress message."""
    attachment = env.fake.add_attachment(filename, data, channel=channel)
    handle = await env.fake.send_slash_command(
        "train", {"story": attachment, **options}, user=env.world.admin, channel=channel
    )
    reply = await handle.wait_reply(30.0)
    assert reply.ephemeral and "Training job #" in reply.content, reply.content
    return await env.fake.wait_for_message(
        lambda m: m.kind == "channel" and any(c.startswith(CANCEL) for c in m.custom_ids()),
        channel=channel,
        timeout=15.0,
    )


async def _finished(env: Env, progress: FakeMessage, timeout: float = 120.0) -> FakeMessage:
    return await env.fake.wait_until(
        lambda: progress if progress.content.startswith("**Finished**") else None,
        timeout,
        "the finished training message",
    )


async def _running(env: Env, progress: FakeMessage, timeout: float = 120.0) -> None:
    await env.fake.wait_until(
        lambda: progress if re.search(r"epoch [1-9]", progress.content) else None,
        timeout,
        "live training progress",
    )


async def _continue(
    env: Env,
    prompt: str,
    channel: FakeChannel | None = None,
    user: FakeUser | None = None,
    validate: bool = True,
    **options: Any,
) -> InteractionHandle:
    return await env.fake.send_slash_command(
        "continue",
        {"prompt": prompt, **options},
        user=user or env.world.member,
        channel=channel or env.world.channel,
        validate=validate,
    )


# -- 1. bad input ------------------------------------------------------------------------------


async def test_story_channel_is_trained(env: Env) -> None:
    progress = await _train(env, env.world.channel, "belling-the-cat.txt", STORY, seed=1)
    done = await _finished(env, progress)
    assert not done.pings_anyone()
    reply = await (await _continue(env, "had a general")).wait_reply(15.0)
    assert "model v1" in reply.content and not reply.ephemeral


BAD_FILES: list[tuple[str, str, bytes, str]] = [
    ("empty file", "empty.txt", b"", "empty"),
    ("PNG image", "cat.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "PNG"),
    ("zip archive", "story.zip", b"PK\x03\x04\x14\x00" + bytes(300), "(?i)zip|export"),
    ("executable", "story.exe", b"\x7fELF\x02\x01\x01\x00" + bytes(300), "executable"),
    ("Latin-1 text", "latin.txt", "Le café était très bon. ".encode("latin-1") * 9, "UTF-8"),
    ("too few symbols", "short.txt", b"the cat", "too short"),
    ("one word repeated", "mouse.txt", b"mouse " * 300, "single word"),
    ("1 MiB line without spaces", "line.txt", b"x" * (1 << 20), "too short"),
    ("NUL bytes", "nul.txt", b"the cat \x00 sat on the mat and more", "NUL"),
    ("control characters", "ctl.txt", b"the cat \x1b[2J sat on the mat and more", "control"),
]


@pytest.mark.parametrize(
    ("what", "name", "data", "match"), BAD_FILES, ids=[c[0] for c in BAD_FILES]
)
async def test_bad_upload(
    env: Env, ledger: Ledger, what: str, name: str, data: bytes, match: str
) -> None:
    attachment = env.fake.add_attachment(name, data, channel=env.world.channel)
    await _refused(
        env,
        ledger,
        what,
        lambda: env.fake.send_slash_command(
            "train", {"story": attachment}, user=env.world.admin, channel=env.world.channel
        ),
        match,
    )


async def test_size_limits_by_metadata_and_by_download(env: Env, ledger: Ledger) -> None:
    big = env.fake.add_attachment(
        "huge.txt", STORY, declared_size=STORY_BYTES + 1, channel=env.world.channel
    )
    await _refused(
        env,
        ledger,
        "over-size by metadata",
        lambda: env.fake.send_slash_command(
            "train", {"story": big}, user=env.world.admin, channel=env.world.channel
        ),
        "limit",
    )
    assert _downloads(env, big.url) == 0, "the bot downloaded a file its metadata refused"
    liar = env.fake.add_attachment(
        "liar.txt",
        b"the cat . " * (STORY_BYTES // 9),
        declared_size=1000,
        channel=env.world.channel,
    )
    await _refused(
        env,
        ledger,
        "download larger than its metadata",
        lambda: env.fake.send_slash_command(
            "train", {"story": liar}, user=env.world.admin, channel=env.world.channel
        ),
        "limit",
    )


async def test_bad_train_options(env: Env, ledger: Ledger) -> None:
    for what, options in [
        ("layers 3", {"layers": 3}),
        ("n_input 0", {"n_input": 0}),
        ("n_input 11", {"n_input": 11}),
        ("seed -1", {"seed": -1}),
        ("seed 2**31", {"seed": 2**31}),
        ("seed 2**53", {"seed": 2**53}),
    ]:
        attachment = env.fake.add_attachment("s.txt", STORY, channel=env.world.channel)
        await _refused(
            env,
            ledger,
            f"/train {what}",
            lambda a=attachment, o=options: env.fake.send_slash_command(  # type: ignore[misc]
                "train",
                {"story": a, **o},
                user=env.world.admin,
                channel=env.world.channel,
                validate=False,
            ),
        )


BAD_PROMPTS: list[tuple[str, str, dict[str, Any], str | None]] = [
    ("empty prompt", "", {}, None),
    ("over the length limit", "the cat " * 40, {}, "limit"),
    ("over the character limit", "a" * 5000, {}, "too long"),
    ("length 0", "the cat", {"length": 0}, "length"),
    ("length negative", "the cat", {"length": -5}, "length"),
    ("length huge", "the cat", {"length": 10**9}, "length"),
    ("temperature negative", "the cat", {"temperature": -1.0}, "temperature"),
    ("temperature NaN", "the cat", {"temperature": math.nan}, "temperature"),
    ("temperature huge", "the cat", {"temperature": 1e300}, "temperature"),
    ("seed negative", "the cat", {"seed": -1}, "seed"),
    ("seed out of range", "the cat", {"seed": 2**40}, "seed"),
]


@pytest.mark.parametrize(
    ("what", "prompt", "options", "match"), BAD_PROMPTS, ids=[c[0] for c in BAD_PROMPTS]
)
async def test_bad_continue(
    env: Env, ledger: Ledger, what: str, prompt: str, options: dict[str, Any], match: str | None
) -> None:
    await _refused(
        env,
        ledger,
        f"/continue {what}",
        lambda: _continue(env, prompt, validate=False, **options),
        match,
    )


# Words the story never uses are no bad input (issue 23): a public reply from the known words
# (none: from the story's start), a small line naming the others, nothing pinged or formatted.
UNKNOWN_PROMPTS: list[tuple[str, str, str]] = [
    ("only punctuation", "?! ... ,", "'!'"),
    ("all unknown words", "zebra quokka axolotl", "'zebra', 'quokka' or 'axolotl'"),
    ("mixed known and unknown", "the mice zebra", "'zebra'"),
    ("unknown mentions", "@everyone <@&1> hi", "'@'"),
    ("markdown prompt", "**the** ||cat||", "'\\*'"),
]


@pytest.mark.parametrize(
    ("what", "prompt", "named"), UNKNOWN_PROMPTS, ids=[c[0] for c in UNKNOWN_PROMPTS]
)
async def test_unknown_words_are_answered_and_named(
    env: Env, ledger: Ledger, what: str, prompt: str, named: str
) -> None:
    reply = await (await _continue(env, prompt, validate=False)).wait_reply(30.0)
    assert reply.content.count("\n") >= 2, (what, reply.content)
    _, note, footer = reply.content.rsplit("\n", 2)
    ok = (
        not reply.ephemeral
        and not reply.pings_anyone()
        and note.startswith("-# I didn't know ")
        and named in note
        and footer.startswith("-# model v")
        and not re.search(r"(?<!\\)[*_`|~]", reply.content)
    )
    ledger.record("bad input", ok, f"discord /continue {what}: answered {reply.content!r}")
    assert ok, (what, reply.content)


async def test_temperature_zero_answers(env: Env, ledger: Ledger) -> None:
    reply = await (await _continue(env, "had a general", temperature=0.0)).wait_reply(15.0)
    ok = not reply.ephemeral and "council" in reply.content and not reply.pings_anyone()
    ledger.record("bad input", ok, f"temperature 0: {reply.content!r}")
    assert ok


async def test_continue_in_a_channel_never_trained(env: Env, ledger: Ledger) -> None:
    reply = await _refused(
        env,
        ledger,
        "/continue never trained",
        lambda: _continue(env, "had a general", channel=env.world.other_channel),
    )
    assert "/train" in reply.content


async def test_guild_commands_in_a_dm_are_refused(env: Env, ledger: Ledger) -> None:
    dm = env.fake.dm_channel(env.world.admin)
    attachment = env.fake.add_attachment("s.txt", STORY, channel=dm)
    await _refused(
        env,
        ledger,
        "/train in a DM",
        lambda: env.fake.send_slash_command(
            "train", {"story": attachment}, user=env.world.admin, channel=dm, validate=False
        ),
        "server",
    )
    assert _downloads(env, attachment.url) == 0
    for name, options in [("forget", {}), ("continue", {"prompt": "the cat"}), ("cancel", {})]:
        await _refused(
            env,
            ledger,
            f"/{name} in a DM",
            lambda n=name, o=options: env.fake.send_slash_command(  # type: ignore[misc]
                n, o, user=env.world.admin, channel=dm, validate=False
            ),
        )


async def test_members_without_the_right(env: Env, ledger: Ledger) -> None:
    attachment = env.fake.add_attachment("s.txt", STORY, channel=env.world.channel)
    await _refused(
        env,
        ledger,
        "/train by a member",
        lambda: env.fake.send_slash_command(
            "train",
            {"story": attachment},
            user=env.world.member,
            channel=env.world.channel,
            validate=False,
        ),
        "Manage Channels",
    )
    assert _downloads(env, attachment.url) == 0
    await _refused(
        env,
        ledger,
        "/forget by a member",
        lambda: env.fake.send_slash_command(
            "forget", {}, user=env.world.member, channel=env.world.channel, validate=False
        ),
        "Manage Channels",
    )
    await _refused(
        env,
        ledger,
        "/cancel with nothing to cancel",
        lambda: env.fake.send_slash_command(
            "cancel", {}, user=env.world.member, channel=env.world.channel
        ),
    )


async def test_continue_while_training_and_cancel_rights(env: Env, ledger: Ledger) -> None:
    """The previous model answers during a training; Cancel needs the uploader or an admin."""
    progress = await _train(env, env.world.channel, "long.txt", long_story(20_000))
    await _running(env, progress)
    before = snapshot(env.db)
    reply = await (await _continue(env, "had a general")).wait_reply(15.0)
    ok = not reply.ephemeral and "model v1" in reply.content
    ledger.record("bad input", ok, f"/continue while training: {reply.content!r}")
    assert ok, reply.content
    cancel_id = next(c for c in progress.custom_ids() if c.startswith(CANCEL))
    refusal = await _refused(
        env,
        ledger,
        "Cancel by a member",
        lambda: env.fake.send_component_click(progress, cancel_id, env.world.member),
        "(?i)cancel",
    )
    assert "Cancelling" not in refusal.content
    second = env.fake.add_attachment("again.txt", STORY, channel=env.world.channel)
    busy = await (
        await env.fake.send_slash_command(
            "train", {"story": second}, user=env.world.admin, channel=env.world.channel
        )
    ).wait_reply(30.0)
    ok = busy.ephemeral and "already has a training" in busy.content and snapshot(env.db) == before
    ledger.record("bad input", ok, f"second /train while one runs: {busy.content!r}")
    assert ok
    click = await env.fake.send_component_click(progress, cancel_id, env.world.admin)
    assert "Cancelling" in (await click.wait_reply(15.0)).content
    await env.fake.wait_until(
        lambda: progress if progress.content.startswith("**Cancelled**") else None, 60.0, "cancel"
    )
    active = snapshot(env.db)["active"]
    assert active == before["active"], "a cancelled training changed the active model"


def _card_subcommand(env: Env) -> str:
    """The story card's subcommand ("show"; "card" in older versions)."""
    options = env.fake.commands[env.world.guild.id]["story"].data.get("options", [])
    names = [o["name"] for o in options]
    return "show" if "show" in names else "card"


def _unescaped_markdown(body: str) -> list[str]:
    return re.findall(r"(?<!\\)(?:[*_`|~]|^#|^>|^-#|\]\()", body, flags=re.MULTILINE)


async def test_mentions_and_markdown_never_ping_or_format(env: Env, ledger: Ledger) -> None:
    channel = env.train_channels[0]
    progress = await _train(env, channel, "**@everyone** ||x||.txt", (MARKUP * 12).encode(), seed=2)
    await _finished(env, progress)
    prompts = ["the bard said", "to @everyone and", "``` fenced ```", "the `code` and"]
    for prompt in prompts:
        reply = await (await _continue(env, prompt, channel=channel, length=120)).wait_reply(15.0)
        body = reply.content.rsplit("\n-# ", 1)[0]
        bad = _unescaped_markdown(body)
        ok = (
            not reply.ephemeral
            and reply.allowed_mentions == {"parse": []}
            and not reply.pings_anyone()
            and "@everyone" not in body
            and "@here" not in body
            and not re.search(r"<@[!&]?\d+>|<#\d+>", body)
            and not bad
        )
        ledger.record("bad input", ok, f"markup story, prompt {prompt!r}: {body!r} {bad}")
        assert ok, (body, bad)
    card = await (
        await env.fake.send_slash_command(
            "story", {}, subcommand=_card_subcommand(env), user=env.world.member, channel=channel
        )
    ).wait_reply(15.0)
    ok = not card.pings_anyone() and "**@everyone**" not in card.text()
    ledger.record("bad input", ok, f"story card with a markup file name: {card.text()!r}")
    assert ok, card.text()


async def test_no_bot_message_can_ping(env: Env, ledger: Ledger) -> None:
    """Every message the bot sent so far, in every state, had mentions off and pings nobody.

    A deferred reply's 'thinking' placeholder has no text and no mention settings until the
    reply replaces it; one deleted before that (the request failed: the error went privately)
    held nothing that could ping."""
    messages = env.fake.messages(include_deleted=True)
    bad = [
        m
        for m in messages
        if m.pings_anyone()
        or (m.allowed_mentions is None and not (m.loading and not m.content and not m.embeds))
    ]
    ledger.record(
        "security", not bad, f"messages that could ping: {[m.id for m in bad]}", len(messages)
    )
    assert not bad, [(m.id, m.content, m.allowed_mentions) for m in bad]


# -- 2. faults: gateway and REST ---------------------------------------------------------------


async def test_gateway_drop_then_resume_and_answer(env: Env, ledger: Ledger) -> None:
    for code in (4000, None, 1011):
        before = env.fake.drop_gateway(code=code)
        # Sent while the connection is down: replayed on RESUME.
        handle = await _continue(env, "had a general", channel=env.load_channels[0])
        await env.fake.wait_for_resume(after=before, timeout=60.0)
        reply = await handle.wait_reply(30.0)
        ok = "council" in reply.content or "model v" in reply.content
        ledger.record("faults", ok, f"gateway drop code {code}: {reply.content!r}")
        assert ok
        reply = await (await _continue(env, "the mice", channel=env.load_channels[1])).wait_reply(
            15.0
        )
        assert "model v" in reply.content


async def test_rest_rate_limits_are_respected(env: Env, ledger: Ledger) -> None:
    for what, route, is_global in [
        (
            "interaction callback 429",
            "POST /interactions/{interaction_id}/{interaction_token}/callback",
            False,
        ),
        ("global 429", "*", True),
    ]:
        injection = env.fake.inject_rate_limit(route, count=2, retry_after=0.3, is_global=is_global)
        handle = await _continue(env, "had a general", channel=env.load_channels[2])
        reply = await handle.wait_reply(30.0)
        ok = "model v" in reply.content and len(injection.served) >= 1 and bool(injection.passed)
        ledger.record("faults", ok, f"{what}: served {len(injection.served)}")
        assert ok, (reply.content, injection.served, injection.passed)
    env.fake.assert_no_violations()


# -- 3. load -----------------------------------------------------------------------------------


async def test_load_50_concurrent_continues_while_2_trainings_run(env: Env, ledger: Ledger) -> None:
    progresses = [
        await _train(env, channel, "long.txt", prose_story(30_000, seed=i))
        for i, channel in enumerate(env.train_channels)
    ]
    for progress in progresses:
        await _running(env, progress)
    env.bot.kill(signal.SIGUSR1)  # starts a fresh loop-lag period inside the bot
    await env.bot.wait_for_log("since the last report")
    prompts = ["had a general", "the mice", "the cat", "mouse", "a young mouse got up"]

    async def one(i: int) -> tuple[float, FakeMessage]:
        started = time.monotonic()
        handle = await _continue(
            env,
            prompts[i % len(prompts)],
            channel=env.load_channels[i % LOAD_CHANNELS],
            user=env.users[i % len(env.users)],
            length=32,
        )
        reply = await handle.wait_reply(30.0)
        return time.monotonic() - started, reply

    results = await asyncio.gather(*(one(i) for i in range(LOAD_REQUESTS)))
    logged = env.bot.log_text().count("since the last report")
    env.bot.kill(signal.SIGUSR1)
    await env.fake.wait_until(
        lambda: env.bot.log_text().count("since the last report") > logged, 10.0, "lag report"
    )
    line = [x for x in env.bot.log_text().splitlines() if "since the last report" in x][-1]
    lag = re.search(r"max ([\d.]+) ms, p99 (\d+) ms over (\d+)", line)
    assert lag is not None, line
    lag_max, lag_p99 = float(lag.group(1)), float(lag.group(2))
    times = sorted(t for t, _ in results)
    p99 = times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)]
    errors = [r for _, r in results if r.ephemeral or "model v" not in r.content]
    for _, reply in results:
        ledger.record(
            "load",
            not (reply.ephemeral or "model v" not in reply.content),
            f"/continue under load: {reply.content[:80]!r}",
        )
    ledger.figure(
        f"load: {LOAD_REQUESTS} concurrent /continue over {LOAD_CHANNELS} channels, 2 trainings "
        f"running: p50 {times[len(times) // 2] * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {times[-1] * 1000:.0f} ms; bot event-loop lag max {lag_max:.1f} ms, "
        f"p99 {lag_p99:.0f} ms"
    )
    env.timings = times
    # Performance targets: printed in the summary, not asserted (see REPLY_P99_TARGET_SECONDS).
    ledger.figure(target_line("load (bot over the fake Discord)", p99, lag_max))
    assert not errors, errors
    for progress in progresses:
        assert re.search(r"epoch [1-9]", progress.content)


async def test_bot_sigkill_mid_training_then_restart(env: Env, ledger: Ledger) -> None:
    """The two load trainings are still running: SIGKILL the whole bot, restart it."""
    before = snapshot(env.db)
    env.bot.kill(signal.SIGKILL)
    await env.bot.wait_exit(30.0)
    await env.bot.start(wait_commands_for=env.world.guild.id, command_names=["train"])
    after = snapshot(env.db)
    states = dict(after["jobs"])
    interrupted = [j for j, s in before["jobs"] if s in ("queued", "running")]
    replies = [
        await (await _continue(env, "had a general", channel=c)).wait_reply(20.0)
        for c in (env.world.channel, env.load_channels[3])
    ]
    ok = (
        integrity(env.db) == "ok"
        and len(interrupted) == 2
        and all(states[j] == "interrupted" for j in interrupted)
        and set(before["stories"]) <= set(after["stories"])
        and set(before["models"]) <= set(after["models"])
        and after["active"] == before["active"]
        and all("model v" in r.content for r in replies)
    )
    ledger.record("faults", ok, f"bot SIGKILL mid-training: {states} {interrupted}")
    assert ok, (states, interrupted, [r.content for r in replies])


# -- 4. secrets ----------------------------------------------------------------------------------


async def test_token_never_in_logs_or_messages(env: Env, ledger: Ledger) -> None:
    await env.bot.stop()
    log = env.bot.log_text()
    secret_parts = [TOKEN, TOKEN.split(".")[0], TOKEN.split(".")[-1]]
    places = {"log": log}
    for message in env.fake.messages(include_deleted=True):
        places[f"message {message.id}"] = repr(message.history)
    for request in env.fake.requests:
        if request.json is not None:
            places[f"request {request.method} {request.path}"] = repr(request.json)
        for uploaded in request.files:
            places[f"file {uploaded}"] = repr(uploaded)
    leaks = [where for where, text in places.items() if any(p in text for p in secret_parts)]
    ledger.record("security", not leaks, f"token found in {leaks}", len(places))
    assert not leaks, leaks
    assert "Traceback" not in log, env.bot.log_tail(80)
    await env.bot.start(wait_commands_for=env.world.guild.id, command_names=["train"])
