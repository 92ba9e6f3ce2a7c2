"""Self-test of the fake Discord with a minimal real discord.py client (not our bot).

Proves the fake speaks the protocol discord.py expects: gateway (zlib-stream, heartbeat, READY,
GUILD_CREATE, RESUME), command sync, every interaction response path, files both ways, 429s.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.fake_discord import (
    BotProcess,
    FakeDiscord,
    FakeUser,
    InteractionHandle,
    MessageFlag,
    World,
)
from tests.fake_discord.handles import (
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE_MESSAGE,
    UPDATE_MESSAGE,
)

pytestmark = pytest.mark.e2e

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _world(fake: FakeDiscord) -> World:
    assert fake.world is not None
    return fake.world


async def _probe(
    fake: FakeDiscord, mode: str, user: FakeUser, **options: object
) -> InteractionHandle:
    """The client's /probe command in the world's channel (what most tests here send)."""
    return await fake.send_slash_command(
        "probe", {"mode": mode, **options}, user=user, channel=_world(fake).channel
    )


async def _start_client(
    fake: FakeDiscord,
    tmp_path: Path,
    shards: int | None = None,
    *,
    shard_count: int | None = None,
    name: str = "client",
) -> BotProcess:
    guild_id = _world(fake).guild.id
    argv = [
        sys.executable,
        "-m",
        "tests.fake_discord.selftest_client",
        fake.token,
        fake.api_base_url,
        fake.gateway_url,
        str(guild_id),
    ]
    if shards:
        argv += ["--shards", str(shards)]
    if shard_count:
        argv += ["--shard-count", str(shard_count)]
    proc = BotProcess(fake, argv, log_path=tmp_path / f"{name}.log")
    await proc.start(wait_commands_for=guild_id, command_names=["probe"])
    await fake.wait_for_commands(None, names=["ping"])
    return proc


@pytest.fixture
async def client(fake_discord: FakeDiscord, tmp_path: Path) -> AsyncIterator[BotProcess]:
    proc = await _start_client(fake_discord, tmp_path)
    proc.errors_expected = False  # type: ignore[attr-defined]
    yield proc
    await proc.stop()
    print(proc.log_tail(200))
    if not proc.errors_expected:  # type: ignore[attr-defined]
        proc.assert_log_clean()


async def test_connects_with_zlib_stream_and_syncs(
    fake_discord: FakeDiscord, client: BotProcess
) -> None:
    fake = fake_discord
    w = _world(fake)
    assert fake.identify_count == 1
    assert any("compress=zlib-stream" in c for c in fake.gateway_connects)
    assert fake.requests_to("GET /users/@me")
    assert fake.requests_to("GET /oauth2/applications/@me")
    probe = fake.commands[w.guild.id]["probe"]
    options = {o["name"]: o for o in probe.data["options"]}
    assert options["file"]["type"] == 11
    assert options["word"]["autocomplete"] is True
    await fake.wait_until(lambda: fake.heartbeat_count >= 1, 10, "heartbeat")


async def test_reply_downloads_attachment_and_button_updates(
    fake_discord: FakeDiscord, client: BotProcess
) -> None:
    fake = fake_discord
    w = _world(fake)
    story = b"long ago, the mice had a general council.\n"
    att = fake.add_attachment("story.txt", story, channel=w.channel)
    handle = await _probe(fake, "reply", w.member, file=att, word="mouse")
    assert await handle.wait_response() == CHANNEL_MESSAGE
    reply = await handle.wait_original()
    digest = hashlib.sha256(story).hexdigest()[:12]
    assert f"got story.txt {len(story)} bytes sha {digest} word=mouse" in reply.content
    assert not reply.ephemeral
    assert reply.allowed_mentions == {"parse": []}
    assert not reply.pings_anyone()
    assert reply.custom_ids() == ["probe:edit", "probe:later"]
    assert fake.requests_to("GET /attachments/{channel_id}/{attachment_id}/{filename}")

    click = await fake.send_component_click(reply, "probe:edit", w.admin)
    assert await click.wait_response() == UPDATE_MESSAGE
    assert reply.content == "clicked by alice"
    assert reply.components == []
    assert reply.edit_count == 1


async def test_deferred_update_then_edit_and_ephemeral_followup(
    fake_discord: FakeDiscord, client: BotProcess
) -> None:
    fake = fake_discord
    w = _world(fake)
    handle = await _probe(fake, "reply", w.member)
    reply = await handle.wait_original()
    click = await fake.send_component_click(reply, "probe:later", w.member)
    assert await click.wait_response() == DEFERRED_UPDATE_MESSAGE
    follow = await click.wait_followup()
    assert follow.ephemeral and follow.content == "ephemeral followup"
    assert reply.content == "edited after deferred update"
    with pytest.raises(ValueError):
        await fake.send_component_click(reply, "no-such-button", w.member)


async def test_defer_edit_followup_with_file_and_channel_message(
    fake_discord: FakeDiscord, client: BotProcess
) -> None:
    fake = fake_discord
    w = _world(fake)
    att = fake.add_attachment("big.txt", b"x" * 10, declared_size=5000)
    handle = await fake.send_slash_command(
        "probe", {"mode": "defer"}, attachments={"file": att}, user=w.admin, channel=w.channel
    )
    assert await handle.wait_response() == DEFERRED_CHANNEL_MESSAGE
    original = await handle.wait_original(lambda m: "working on" in m.content)
    assert original.content == "working on 5000 bytes"  # metadata size, no download
    follow = await handle.wait_followup(lambda m: bool(m.attachments))
    plot = follow.file("plot.png")
    assert plot.data.startswith(PNG_SIGNATURE)
    assert follow.embeds[0]["title"] == "Summary"
    assert "symbols: 42" in follow.text()
    async with aiohttp.ClientSession() as session, session.get(plot.url) as resp:
        assert resp.status == 200
        assert await resp.read() == plot.data
    progress = await fake.wait_for_message(
        lambda m: m.content == "progress 100%", channel=w.channel, kind="channel"
    )
    assert progress.edit_count == 1
    assert progress.history[0]["content"] == "progress 0%"


async def test_first_followup_replaces_thinking_message(
    fake_discord: FakeDiscord, client: BotProcess
) -> None:
    fake = fake_discord
    w = _world(fake)
    handle = await _probe(fake, "followup-first", w.member)
    msg = await handle.wait_followup()
    assert msg is handle.original
    assert msg.ephemeral and not msg.loading
    assert msg.content == "first followup replaces thinking"


async def test_permissions_reach_discord_py(fake_discord: FakeDiscord, client: BotProcess) -> None:
    fake = fake_discord
    w = _world(fake)
    denied = await _probe(fake, "perms", w.member)
    msg = await denied.wait_original()
    assert msg.content.startswith("manage_channels=False app_send=True")
    assert msg.ephemeral and msg.flags & MessageFlag.EPHEMERAL
    allowed = await _probe(fake, "perms", w.admin)
    assert (await allowed.wait_original()).content.startswith("manage_channels=True")
    owner = await _probe(fake, "perms", w.owner)
    assert (await owner.wait_original()).content.startswith("manage_channels=True")


async def test_autocomplete_and_global_command_in_dm(
    fake_discord: FakeDiscord, client: BotProcess
) -> None:
    fake = fake_discord
    w = _world(fake)
    handle = await fake.send_autocomplete(
        "probe", {"mode": "reply", "word": "mo"}, "word", user=w.member, channel=w.channel
    )
    assert await handle.wait_response() == AUTOCOMPLETE_RESULT
    assert await handle.wait_autocomplete() == [{"name": "mouse", "value": "mouse"}]
    dm = fake.dm_channel(w.member)
    with pytest.raises(ValueError):
        await fake.send_slash_command("probe", {"mode": "reply"}, user=w.member, channel=dm)
    ping = await fake.send_slash_command("ping", user=w.member, channel=dm)
    reply = await ping.wait_original()
    assert reply.content == "pong" and reply.ephemeral


async def test_option_validation_mirrors_discord_client(
    fake_discord: FakeDiscord, client: BotProcess
) -> None:
    fake = fake_discord
    w = _world(fake)
    with pytest.raises(ValueError, match="required"):
        await fake.send_slash_command("probe", {}, user=w.member, channel=w.channel)
    with pytest.raises(ValueError, match="not in the registered"):
        await fake.send_slash_command(
            "probe", {"mode": "x", "bogus": 1}, user=w.member, channel=w.channel
        )
    with pytest.raises(ValueError, match="not registered"):
        await fake.send_slash_command("nope", user=w.member, channel=w.channel)


@pytest.mark.parametrize("code", [4000, None], ids=["close-4000", "tcp-drop"])
async def test_gateway_drop_resumes_and_replays(
    fake_discord: FakeDiscord, client: BotProcess, code: int | None
) -> None:
    fake = fake_discord
    w = _world(fake)
    before = fake.drop_gateway(code)
    # sent while the bot is disconnected: must be replayed on RESUME
    handle = await _probe(fake, "reply", w.member)
    await fake.wait_for_resume(after=before)
    assert fake.identify_count == 1
    assert fake.gateway_connects[-1].startswith("/resume-gateway?")
    reply = await handle.wait_original()
    assert reply.content.startswith("got None 0 bytes")
    again = await _probe(fake, "perms", w.admin)
    assert (await again.wait_original()).content.startswith("manage_channels=True")


async def test_reconnect_request_and_invalid_session(
    fake_discord: FakeDiscord, client: BotProcess
) -> None:
    fake = fake_discord
    w = _world(fake)
    before = fake.request_reconnect()
    await fake.wait_for_resume(after=before)
    identifies = fake.invalidate_sessions()
    fake.drop_gateway(4000)
    await fake.wait_for_identify(count=identifies + 1)
    assert fake.invalid_session_count == 1
    handle = await _probe(fake, "reply", w.member)
    await handle.wait_original()


async def test_rate_limits_are_retried(fake_discord: FakeDiscord, client: BotProcess) -> None:
    fake = fake_discord
    w = _world(fake)
    channel_posts = fake.inject_rate_limit(
        "POST /channels/{channel_id}/messages", count=2, retry_after=0.3
    )
    followups = fake.inject_rate_limit(
        "POST /webhooks/{application_id}/{interaction_token}", count=1, retry_after=0.2
    )
    edits = fake.inject_rate_limit(
        "PATCH /channels/{channel_id}/messages/{message_id}",
        count=1,
        retry_after=0.2,
        is_global=True,
    )
    handle = await _probe(fake, "defer", w.admin)
    await handle.wait_followup(lambda m: bool(m.attachments), timeout=15)
    await fake.wait_for_message(lambda m: m.content == "progress 100%", timeout=15)
    assert len(channel_posts.served) == 2 and len(channel_posts.passed) == 1
    assert len(followups.served) == 1 and len(followups.passed) == 1
    assert len(edits.served) == 1 and len(edits.passed) == 1
    first, retry = channel_posts.served[0], channel_posts.served[1]
    assert retry.at - first.at >= 0.3
    assert fake.violations == []


async def test_sharded_client_uses_gateway_bot(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    fake = fake_discord
    w = _world(fake)
    fake.recommended_shards = 2
    proc = await _start_client(fake, tmp_path, shards=2)
    try:
        await fake.wait_for_identify(count=2)
        assert fake.requests_to("GET /gateway/bot")
        handle = await _probe(fake, "reply", w.member)
        await handle.wait_original()
    finally:
        await proc.stop()
        print(proc.log_tail(200))


async def test_two_shard_counts_both_get_the_guild_and_one_answer_counts(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    """Resharding on Discord: sessions of 2 and of 3 shards, connected at once, both get the
    guild's interaction; the second initial response is refused with 40060."""
    fake = fake_discord
    w = _world(fake)
    fake.fail_on_violations = False
    two = await _start_client(fake, tmp_path, shard_count=2, name="two")
    three = await _start_client(fake, tmp_path, shard_count=3, name="three")
    try:
        await fake.wait_for_identify(count=5)
        handle = await _probe(fake, "reply", w.member)
        await handle.wait_original()
        await fake.wait_until(lambda: handle.initial_responses == 2 or None, 15, "two answers")
        assert [v.kind for v in fake.violations] == ["double-ack"]
        refused = [r for r in fake.requests if r.status == 400 and r.path.endswith("/callback")]
        assert len(refused) == 1
        # discord.py raises the refusal in the slower client's command: 400, code 40060.
        await fake.wait_until(
            lambda: any("40060" in c.log_text() for c in (two, three)) or None, 15, "40060"
        )
    finally:
        await two.stop()
        await three.stop()
        fake.violations.clear()


async def test_unknown_routes_and_violations_are_caught(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    headers = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.api_base_url}/no/such/route", headers=headers) as resp:
            assert resp.status == 404
        async with session.get(f"{fake.api_base_url}/users/@me") as resp:
            assert resp.status == 401
        url = f"{fake.api_base_url}/channels/{_world(fake).channel.id}/messages"
        async with session.post(url, json={"content": "x" * 2001}, headers=headers) as resp:
            assert resp.status == 400
            assert resp.headers["Content-Type"] == "application/json"
    with pytest.raises(AssertionError, match="/no/such/route"):
        fake.assert_no_unknown_requests()
    with pytest.raises(AssertionError, match="2000 or fewer"):
        fake.assert_no_violations()
    fake.unknown_requests.clear()
    fake.violations.clear()


async def test_late_ack_and_expired_token_are_rejected(
    fake_discord: FakeDiscord, client: BotProcess
) -> None:
    fake = fake_discord
    w = _world(fake)
    fake.fail_on_violations = False
    client.errors_expected = True  # type: ignore[attr-defined]
    fake.ack_deadline = 0.05
    late = await _probe(fake, "slow", w.member)
    await fake.wait_until(
        lambda: any(v.kind.startswith("late-ack") for v in fake.violations), 10, "late ack"
    )
    assert late.response_type is None
    await client.wait_for_log("Unknown interaction")

    fake.ack_deadline = 3.0
    fake.violations.clear()
    handle = await _probe(fake, "reply", w.member)
    reply = await handle.wait_original()
    handle.expire()
    click = await fake.send_component_click(reply, "probe:later", w.member)
    await click.wait_response()
    click.expire()
    await fake.wait_for_request(
        "PATCH /webhooks/{application_id}/{interaction_token}/messages/@original",
        lambda r: r.status == 401,
    )
