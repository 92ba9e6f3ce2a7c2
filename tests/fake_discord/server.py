"""The fake Discord server: gateway websocket, REST API and CDN on 127.0.0.1, in the test's loop.

The real, unmodified discord.py client talks to it over sockets. See README.md for the API.
"""

# ruff: noqa: ASYNC109  # the harness API takes explicit timeouts so failures say what was awaited

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import itertools
import json
import logging
import math
import re
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from aiohttp import web

from tests.fake_discord.handles import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE_MESSAGE,
    MESSAGE_COMPONENT,
    MODAL,
    MODAL_SUBMIT,
    UPDATE_MESSAGE,
    InteractionHandle,
    RateLimitInjection,
    Violation,
)
from tests.fake_discord.models import (
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    MessageFlag,
    Perm,
    RecordedRequest,
    RegisteredCommand,
    SnowflakeFactory,
    UploadedFile,
    iso_now,
)
from tests.fake_discord.validation import autocomplete_errors, command_errors, message_errors

log = logging.getLogger(__name__)

T = TypeVar("T")

API_PREFIX = "/api/v10"
GATEWAY_PATH = "/gateway"
RESUME_GATEWAY_PATH = "/resume-gateway"

# gateway opcodes
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE, OP_VOICE_STATE = 0, 1, 2, 3, 4
OP_RESUME, OP_RECONNECT, OP_REQUEST_MEMBERS, OP_INVALID_SESSION = 6, 7, 8, 9
OP_HELLO, OP_HEARTBEAT_ACK = 10, 11

INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

_OPTION_TYPES = {"str": 3, "int": 4, "bool": 5, "float": 10}


class DiscordError(Exception):
    """Raised inside route handlers; becomes a Discord-shaped JSON error response."""

    def __init__(self, status: int, code: int, message: str, *, violation: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        #: when set, the bot did something real Discord rejects: recorded as a violation
        self.violation = violation


@dataclass
class World:
    """The default guild set up by the ``fake_discord`` fixture."""

    guild: FakeGuild
    channel: FakeChannel
    other_channel: FakeChannel
    owner: FakeUser
    admin: FakeUser  # has Manage Channels
    member: FakeUser  # plain member, no extra permissions
    admin_role: FakeRole


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    request: web.Request
    path: str
    compressor: Any = None
    queue: asyncio.Queue[dict[str, Any] | tuple[str, int | None]] = field(
        default_factory=asyncio.Queue
    )
    session: _GatewaySession | None = None
    closed: bool = False


@dataclass
class _GatewaySession:
    id: str
    shard: tuple[int, int] | None
    intents: int
    seq: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    conn: _Connection | None = None
    resumes: int = 0

    def owns_guild(self, guild_id: int | None) -> bool:
        if self.shard is None:
            return True
        shard_id, count = self.shard
        if guild_id is None:
            return shard_id == 0  # DMs go to shard 0
        return (guild_id >> 22) % count == shard_id

    def dispatch(self, event: str, data: Any) -> int:
        self.seq += 1
        payload = {"op": OP_DISPATCH, "t": event, "s": self.seq, "d": data}
        self.log.append(payload)
        if self.conn is not None and not self.conn.closed:
            self.conn.queue.put_nowait(payload)
        return self.seq


@dataclass
class _Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: Callable[[web.Request, dict[str, str], RecordedRequest], Awaitable[web.StreamResponse]]
    auth: bool = True

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


def _json_response(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    # discord.py only decodes JSON when Content-Type is exactly "application/json"
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return web.Response(status=status, body=json.dumps(body).encode(), headers=all_headers)


class FakeDiscord:
    """A fake Discord (gateway + REST + CDN) bound to 127.0.0.1 on an ephemeral port."""

    def __init__(
        self,
        *,
        token: str = "fake-bot-token.for-tests-only",
        bot_name: str = "fabulist-test",
        heartbeat_interval_ms: int = 41250,
        recommended_shards: int = 1,
        allow_privileged_intents: bool = False,
        ack_deadline: float = 3.0,
        attachment_size_limit: int = 10 * 1024 * 1024,
    ) -> None:
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.recommended_shards = recommended_shards
        self.allow_privileged_intents = allow_privileged_intents
        #: seconds within which the initial interaction response must arrive (Discord: 3)
        self.ack_deadline = ack_deadline
        self.attachment_size_limit = attachment_size_limit
        #: emit MESSAGE_CREATE/UPDATE/DELETE for the bot's own non-ephemeral messages
        self.emit_message_events = True
        #: when False, the fixture's teardown does not fail on violations
        self.fail_on_violations = True

        self.snowflakes = SnowflakeFactory()
        self.application_id = self.snowflakes.next()
        self.bot_user = FakeUser(self.application_id, bot_name, bot=True)
        self.app_owner = FakeUser(self.snowflakes.next(), "app-owner")
        self.users: dict[int, FakeUser] = {
            self.bot_user.id: self.bot_user,
            self.app_owner.id: self.app_owner,
        }
        self.guilds: dict[int, FakeGuild] = {}
        self.dm_channels: dict[int, FakeChannel] = {}
        self.messages_by_id: dict[int, FakeMessage] = {}
        self.attachments_by_id: dict[int, FakeAttachment] = {}
        self.commands: dict[int | None, dict[str, RegisteredCommand]] = {}
        #: each bulk overwrite as (guild_id or None, [names])
        self.command_syncs: list[tuple[int | None, list[str]]] = []
        self.interactions: dict[int, InteractionHandle] = {}
        self._interactions_by_token: dict[str, InteractionHandle] = {}

        self.requests: list[RecordedRequest] = []
        self.unknown_requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.rate_limits: list[RateLimitInjection] = []
        self.history_pages: list[RecordedRequest] = []  # GET /channels/{id}/messages answered
        self._cooldowns: dict[str, float] = {}

        self._sessions: dict[str, _GatewaySession] = {}
        self._active_sessions: list[_GatewaySession] = []
        self._connections: list[_Connection] = []
        self.identify_count = 0
        self.resume_count = 0
        self.heartbeat_count = 0
        self.invalid_session_count = 0
        #: path and query of each gateway connection, e.g. "/gateway?v=10&encoding=json&..."
        self.gateway_connects: list[str] = []
        self.presence_updates: list[dict[str, Any]] = []

        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._routes = self._build_routes()
        self._command_versions = itertools.count(1)
        self.world: World | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base_url(self) -> str:
        """Value for discord.http.Route.BASE / the bot's ``api_base_url``."""
        return f"{self.http_base}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """Value for DiscordWebSocket.DEFAULT_GATEWAY / the bot's ``gateway_url``."""
        return f"ws://127.0.0.1:{self.port}{GATEWAY_PATH}"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{RESUME_GATEWAY_PATH}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("fake Discord listening on %s", self.http_base)

    async def stop(self) -> None:
        for conn in list(self._connections):
            if not conn.ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.ws.close(code=1001), 2)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ waiting

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def notify(self) -> None:
        """Wake up waiters (for conditions on state outside the fake, e.g. a process exit)."""
        self._notify()

    async def wait_until(
        self, predicate: Callable[[], T | None], timeout: float = 10.0, what: str = "condition"
    ) -> T:
        """Wait until ``predicate()`` returns something truthy (re-checked on every fake event)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}\n{self.summary()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def summary(self, last: int = 25) -> str:
        lines = [f"last {last} requests:"]
        lines += [f"  {r}" for r in self.requests[-last:]]
        if self.violations:
            lines.append("violations:")
            lines += [f"  {v}" for v in self.violations]
        return "\n".join(lines)

    async def wait_for_message(
        self,
        predicate: Callable[[FakeMessage], bool] | None = None,
        *,
        channel: FakeChannel | int | None = None,
        kind: str | None = None,
        timeout: float = 10.0,
    ) -> FakeMessage:
        """Wait for any bot message (current state) matching; kind: original/followup/channel."""
        check = predicate or (lambda m: True)
        channel_id = channel.id if isinstance(channel, FakeChannel) else channel

        def ready() -> FakeMessage | None:
            for msg in self.messages_by_id.values():
                if msg.deleted or msg.kind == "user":
                    continue
                if channel_id is not None and msg.channel_id != channel_id:
                    continue
                if kind is not None and msg.kind != kind:
                    continue
                if check(msg):
                    return msg
            return None

        return await self.wait_until(ready, timeout, "bot message")

    async def wait_for_request(
        self,
        route: str,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        *,
        timeout: float = 10.0,
    ) -> RecordedRequest:
        """Wait for a request whose route key ("METHOD /template") or template equals ``route``."""
        check = predicate or (lambda r: True)
        return await self.wait_until(
            lambda: next((r for r in self.requests_to(route) if check(r)), None),
            timeout,
            f"request {route}",
        )

    def requests_to(self, route: str) -> list[RecordedRequest]:
        def match(req: RecordedRequest) -> bool:
            if req.route is None:
                return False
            return req.route == route or req.route.split(" ", 1)[1] == route

        return [r for r in self.requests if match(r)]

    async def wait_for_commands(
        self,
        guild: FakeGuild | int | None = None,
        *,
        names: Iterable[str] = (),
        timeout: float = 30.0,
    ) -> dict[str, RegisteredCommand]:
        """Wait until commands were bulk-registered for ``guild`` (None = global)."""
        guild_id = guild.id if isinstance(guild, FakeGuild) else guild
        wanted = set(names)

        def ready() -> dict[str, RegisteredCommand] | None:
            if not any(g == guild_id for g, _ in self.command_syncs):
                return None
            cmds = self.commands.get(guild_id, {})
            return cmds if wanted <= set(cmds) else None

        return await self.wait_until(ready, timeout, f"command registration for {guild_id}")

    async def wait_for_identify(self, count: int = 1, timeout: float = 30.0) -> None:
        await self.wait_until(lambda: self.identify_count >= count, timeout, "IDENTIFY")

    async def wait_for_resume(self, after: int = 0, timeout: float = 30.0) -> None:
        """Wait until more than ``after`` RESUMEs were answered with RESUMED."""
        await self.wait_until(lambda: self.resume_count > after, timeout, "RESUME")

    def messages(
        self, channel: FakeChannel | int | None = None, *, include_deleted: bool = False
    ) -> list[FakeMessage]:
        """Bot messages in creation order (optionally one channel)."""
        channel_id = channel.id if isinstance(channel, FakeChannel) else channel
        return [
            m
            for m in self.messages_by_id.values()
            if m.kind != "user"
            and (include_deleted or not m.deleted)
            and (channel_id is None or m.channel_id == channel_id)
        ]

    # ------------------------------------------------------------------ assertions

    def assert_no_unknown_requests(self) -> None:
        if self.unknown_requests:
            lines = "\n".join(f"  {r.method} {r.path}" for r in self.unknown_requests)
            raise AssertionError(f"the fake Discord got requests to unknown routes:\n{lines}")

    def assert_no_violations(self) -> None:
        if self.violations:
            lines = "\n".join(f"  {v}" for v in self.violations)
            raise AssertionError(f"Discord API rules were broken:\n{lines}")

    def _violate(self, kind: str, detail: str, request: RecordedRequest | None = None) -> None:
        log.warning("violation %s: %s", kind, detail)
        self.violations.append(Violation(kind, detail, request))
        self._notify()

    # ------------------------------------------------------------------ world building

    def add_user(self, username: str, *, bot: bool = False) -> FakeUser:
        user = FakeUser(self.snowflakes.next(), username, global_name=username.title(), bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str = "Test Guild",
        *,
        owner: FakeUser | None = None,
        everyone_permissions: int = Perm.DEFAULT_MEMBER,
        bot_permissions: int = Perm.DEFAULT_BOT,
    ) -> FakeGuild:
        owner = owner or self.add_user(f"{name.lower().replace(' ', '-')}-owner")
        guild_id = self.snowflakes.next()
        guild = FakeGuild(guild_id, name, owner.id)
        guild.roles[guild_id] = FakeRole(guild_id, "@everyone", everyone_permissions, 0)
        bot_role = FakeRole(
            self.snowflakes.next(), self.bot_user.username, bot_permissions, 1, True
        )
        guild.roles[bot_role.id] = bot_role
        guild.members[owner.id] = FakeMember(owner)
        guild.members[self.bot_user.id] = FakeMember(self.bot_user, [bot_role.id])
        self.guilds[guild_id] = guild
        for session in self._sessions_for(guild_id):
            session.dispatch("GUILD_CREATE", guild.create_payload(self._bot_member(guild)))
        return guild

    def add_channel(self, guild: FakeGuild, name: str) -> FakeChannel:
        channel = FakeChannel(self.snowflakes.next(), name, guild.id, position=len(guild.channels))
        guild.channels[channel.id] = channel
        for session in self._sessions_for(guild.id):
            session.dispatch("CHANNEL_CREATE", channel.payload())
        return channel

    def add_role(self, guild: FakeGuild, name: str, permissions: int = 0) -> FakeRole:
        role = FakeRole(self.snowflakes.next(), name, permissions, len(guild.roles))
        guild.roles[role.id] = role
        for session in self._sessions_for(guild.id):
            session.dispatch(
                "GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.payload()}
            )
        return role

    def add_member(
        self,
        guild: FakeGuild,
        username: str,
        *,
        permissions: int = 0,
        roles: Sequence[FakeRole] = (),
        nick: str | None = None,
        user: FakeUser | None = None,
    ) -> FakeUser:
        """Add a member; ``permissions`` (if any) are granted through a new role of their own."""
        user = user or self.add_user(username)
        role_ids = [r.id for r in roles]
        if permissions:
            role_ids.append(self.add_role(guild, f"{username}-role", permissions).id)
        guild.members[user.id] = FakeMember(user, role_ids, nick)
        return user

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The DM channel between ``user`` and the bot."""
        for channel in self.dm_channels.values():
            if channel.recipient is not None and channel.recipient.id == user.id:
                return channel
        channel = FakeChannel(self.snowflakes.next(), "", None, type=1, recipient=user)
        self.dm_channels[channel.id] = channel
        return channel

    def default_world(self) -> World:
        """Guild 'Fabulist Test' with #story and #other, an owner, an admin and a plain member."""
        owner = self.add_user("owner")
        guild = self.add_guild("Fabulist Test", owner=owner)
        channel = self.add_channel(guild, "story")
        other = self.add_channel(guild, "other")
        admin_role = self.add_role(guild, "Storytellers", Perm.MANAGE_CHANNELS)
        admin = self.add_member(guild, "alice", roles=[admin_role])
        member = self.add_member(guild, "bob")
        self.world = World(guild, channel, other, owner, admin, member, admin_role)
        return self.world

    def add_attachment(
        self,
        filename: str,
        data: bytes,
        *,
        content_type: str | None = None,
        declared_size: int | None = None,
        channel: FakeChannel | None = None,
    ) -> FakeAttachment:
        """Put a file on the fake CDN, as if a user uploaded it (for attachment options).

        ``declared_size`` lets the metadata lie about the size (the download serves ``data``).
        """
        if content_type is None and filename.endswith(".txt"):
            content_type = "text/plain; charset=utf-8"
        return self._store_attachment(
            channel.id if channel else 0, filename, data, content_type, declared_size
        )

    def _store_attachment(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        content_type: str | None,
        declared_size: int | None = None,
        *,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> FakeAttachment:
        att_id = self.snowflakes.next()
        now = int(time.time())
        url = (
            f"{self.http_base}/attachments/{channel_id}/{att_id}/{quote(filename)}"
            f"?ex={now + 86400:x}&is={now:x}&hm={secrets.token_hex(8)}&"
        )
        att = FakeAttachment(
            att_id, filename, data, content_type, url, declared_size, description, ephemeral
        )
        self.attachments_by_id[att_id] = att
        return att

    def _bot_member(self, guild: FakeGuild) -> FakeMember:
        return guild.members[self.bot_user.id]

    def channel(self, channel_id: int) -> FakeChannel | None:
        if channel_id in self.dm_channels:
            return self.dm_channels[channel_id]
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild.channels[channel_id]
        return None

    # ------------------------------------------------------------------ fault injection

    def inject_rate_limit(
        self,
        route: str = "*",
        *,
        count: int = 1,
        retry_after: float = 0.2,
        is_global: bool = False,
    ) -> RateLimitInjection:
        """Answer the next ``count`` matching REST requests with 429.

        ``route`` is a route key like ``"POST /channels/{channel_id}/messages"``, a bare template
        (any method), or ``"*"``. Headers: X-RateLimit-*, Retry-After, Via; JSON body with
        ``retry_after`` and ``global``. A client retrying before ``retry_after`` is a violation.
        """
        injection = RateLimitInjection(route, count, retry_after, is_global)
        self.rate_limits.append(injection)
        return injection

    def drop_gateway(self, code: int | None = 4000, *, shard: int | None = None) -> int:
        """Drop the bot's gateway connection(s); returns ``resume_count`` before the drop.

        ``code`` is the websocket close code (4000 = unknown error, resumable); ``None`` drops the
        TCP connection without a close frame. Events dispatched until the bot resumes are
        replayed on RESUME. Follow with ``await fake.wait_for_resume(after=returned_value)``.
        """
        before = self.resume_count
        dropped = 0
        for session in self._active_sessions:
            if shard is not None and (session.shard is None or session.shard[0] != shard):
                continue
            conn = session.conn
            if conn is None or conn.closed:
                continue
            session.conn = None
            conn.closed = True
            conn.queue.put_nowait(("close", code))
            dropped += 1
        if not dropped:
            raise RuntimeError("no connected gateway session to drop")
        return before

    def request_reconnect(self) -> int:
        """Send op 7 RECONNECT to every connected session (the client closes and resumes)."""
        before = self.resume_count
        for session in self._active_sessions:
            if session.conn is not None and not session.conn.closed:
                session.conn.queue.put_nowait({"op": OP_RECONNECT, "d": None})
        return before

    def invalidate_sessions(self) -> int:
        """Forget all sessions: the bot's next RESUME gets op 9 and it must IDENTIFY again."""
        before = self.identify_count
        self._sessions.clear()
        return before

    # ------------------------------------------------------------------ sending interactions

    def _sessions_for(self, guild_id: int | None) -> list[_GatewaySession]:
        return [s for s in self._active_sessions if s.owns_guild(guild_id)]

    def _dispatch_to_guild(self, guild_id: int | None, event: str, data: Any) -> None:
        # Discord routes by each session's own [shard_id, num_shards]: while two sets with
        # different shard counts are connected (resharding), a guild's events reach one session
        # of each set ("num_shards does not limit the number of sessions; it is only used for
        # routing", Discord's gateway docs).
        sessions = self._sessions_for(guild_id)
        if not sessions:
            raise RuntimeError(f"no gateway session for guild {guild_id}: is the bot connected?")
        for session in sessions:
            session.dispatch(event, data)

    def find_command(self, name: str, guild: FakeGuild | None) -> RegisteredCommand | None:
        if guild is not None and name in self.commands.get(guild.id, {}):
            return self.commands[guild.id][name]
        return self.commands.get(None, {}).get(name)

    def _interaction_base(
        self,
        itype: int,
        user: FakeUser,
        channel: FakeChannel,
        data: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], FakeGuild | None]:
        interaction_id = self.snowflakes.next()
        token = f"aW50ZXJhY3Rpb246{interaction_id}:{secrets.token_urlsafe(48)}"
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": itype,
            "token": token,
            "version": 1,
            "channel_id": str(channel.id),
            "locale": user.locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": self.attachment_size_limit,
        }
        if data is not None:
            payload["data"] = data
        guild = self.guilds.get(channel.guild_id) if channel.guild_id is not None else None
        if guild is None:
            payload["user"] = user.payload()
            payload["channel"] = channel.payload()
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"0": "0"}
            payload["app_permissions"] = str(Perm.DEFAULT_BOT)
            return payload, None
        member = guild.members.get(user.id)
        if member is None:
            raise ValueError(f"{user.username} is not a member of {guild.name}")
        perms = guild.permissions_of(user.id)
        member_payload = member.payload()
        member_payload["permissions"] = str(perms)
        channel_payload = channel.payload()
        channel_payload["permissions"] = str(perms)
        payload.update(
            guild_id=str(guild.id),
            guild={"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
            guild_locale=guild.preferred_locale,
            channel=channel_payload,
            member=member_payload,
            app_permissions=str(guild.permissions_of(self.bot_user.id)),
            context=0,
            authorizing_integration_owners={"0": str(guild.id)},
        )
        return payload, guild

    def _build_options(
        self,
        schema: list[dict[str, Any]] | None,
        values: Mapping[str, Any],
        resolved: dict[str, dict[str, Any]],
        channel: FakeChannel,
        *,
        focused: str | None,
        validate: bool,
    ) -> list[dict[str, Any]]:
        by_name = {o["name"]: o for o in schema or []}
        if validate and schema is not None:
            unknown = set(values) - set(by_name)
            if unknown:
                raise ValueError(f"options not in the registered command: {sorted(unknown)}")
            if focused is None:
                missing = [
                    o["name"] for o in schema if o.get("required") and o["name"] not in values
                ]
                if missing:
                    raise ValueError(f"required options missing: {missing}")
        options: list[dict[str, Any]] = []
        for name, value in values.items():
            opt_schema = by_name.get(name, {})
            opt_type = opt_schema.get("type") or self._infer_type(value)
            option: dict[str, Any] = {"name": name, "type": opt_type}
            if name == focused:
                option["value"] = str(value)
                option["focused"] = True
            elif opt_type == 11:
                att = self._as_attachment(value, channel)
                resolved.setdefault("attachments", {})[str(att.id)] = att.payload()
                option["value"] = str(att.id)
            elif opt_type in (6, 7, 8, 9):
                option["value"] = str(self._resolve_entity(value, resolved, channel))
            else:
                if validate and schema is not None:
                    self._check_value(name, opt_schema, value)
                option["value"] = value
            options.append(option)
        return options

    @staticmethod
    def _infer_type(value: Any) -> int:
        if isinstance(value, bool):
            return 5
        if isinstance(value, int):
            return 4
        if isinstance(value, float):
            return 10
        if isinstance(value, FakeAttachment | bytes | tuple):
            return 11
        if isinstance(value, FakeUser):
            return 6
        if isinstance(value, FakeChannel):
            return 7
        if isinstance(value, FakeRole):
            return 8
        return 3

    @staticmethod
    def _check_value(name: str, schema: dict[str, Any], value: Any) -> None:
        """Discord's client refuses values outside the declared type/range/choices."""
        types: dict[int, type | tuple[type, ...]] = {3: str, 4: int, 5: bool, 10: (int, float)}
        expected = types.get(schema.get("type", 3))
        if expected and (
            not isinstance(value, expected) or (schema["type"] != 5 and value is True)
        ):
            raise ValueError(f"option {name}: {value!r} is not of type {schema['type']}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"option {name}: Discord cannot send {value!r}")
        for key, ok in (
            ("min_value", lambda v, lim: v >= lim),
            ("max_value", lambda v, lim: v <= lim),
        ):
            if key in schema and schema[key] is not None and not ok(value, schema[key]):
                raise ValueError(f"option {name}: {value!r} violates {key}={schema[key]}")
        if isinstance(value, str):
            if len(value) > int(schema.get("max_length") or 6000):
                raise ValueError(f"option {name}: longer than max_length")
            if len(value) < int(schema.get("min_length") or 0):
                raise ValueError(f"option {name}: shorter than min_length")
        choices = schema.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"option {name}: {value!r} is not one of the choices")

    def _as_attachment(self, value: Any, channel: FakeChannel) -> FakeAttachment:
        if isinstance(value, FakeAttachment):
            return value
        if isinstance(value, bytes):
            return self.add_attachment("file.txt", value, channel=channel)
        if isinstance(value, tuple):
            return self.add_attachment(value[0], value[1], channel=channel)
        raise TypeError(f"cannot use {value!r} as an attachment")

    def _resolve_entity(
        self, value: Any, resolved: dict[str, dict[str, Any]], channel: FakeChannel
    ) -> int:
        guild = self.guilds.get(channel.guild_id) if channel.guild_id else None
        if isinstance(value, FakeUser):
            resolved.setdefault("users", {})[str(value.id)] = value.payload()
            if guild is not None and value.id in guild.members:
                member = guild.members[value.id].payload()
                member.pop("user")
                member["permissions"] = str(guild.permissions_of(value.id))
                resolved.setdefault("members", {})[str(value.id)] = member
            return value.id
        if isinstance(value, FakeChannel):
            data = value.payload()
            data["permissions"] = str(Perm.ALL)
            resolved.setdefault("channels", {})[str(value.id)] = data
            return value.id
        if isinstance(value, FakeRole):
            resolved.setdefault("roles", {})[str(value.id)] = value.payload()
            return value.id
        raise TypeError(f"cannot resolve {value!r}")

    def _register_interaction(
        self,
        payload: dict[str, Any],
        user: FakeUser,
        channel: FakeChannel,
        guild: FakeGuild | None,
        target: FakeMessage | None = None,
    ) -> InteractionHandle:
        handle = InteractionHandle(
            self, payload, user=user, channel=channel, guild=guild, target_message=target
        )
        self.interactions[handle.id] = handle
        self._interactions_by_token[handle.token] = handle
        self._dispatch_to_guild(guild.id if guild else None, "INTERACTION_CREATE", payload)
        return handle

    def _command_data(
        self,
        name: str,
        options: Mapping[str, Any],
        channel: FakeChannel,
        *,
        subcommand: str | None,
        attachments: Mapping[str, Any] | None,
        focused: str | None,
        validate: bool,
    ) -> dict[str, Any]:
        guild = self.guilds.get(channel.guild_id) if channel.guild_id else None
        command = self.find_command(name, guild)
        if command is None and validate:
            raise ValueError(f"/{name} is not registered (global or for this guild)")
        if command is not None and guild is None and command.guild_id is not None:
            raise ValueError(f"/{name} is a guild command; it cannot be used in DMs")
        values = dict(options)
        values.update(attachments or {})
        resolved: dict[str, dict[str, Any]] = {}
        schema: list[dict[str, Any]] | None = command.data.get("options", []) if command else None
        path = subcommand.split() if subcommand else []
        built_path: list[tuple[str, int]] = []
        for part in path:
            sub = next((o for o in schema or [] if o["name"] == part), None)
            if sub is None and validate and schema is not None:
                raise ValueError(f"/{name}: no subcommand {part!r}")
            built_path.append((part, (sub or {}).get("type", 1)))
            schema = (sub or {}).get("options", []) if sub is not None else None
        opts = self._build_options(
            schema, values, resolved, channel, focused=focused, validate=validate
        )
        for part, ptype in reversed(built_path):
            opts = [{"name": part, "type": ptype, "options": opts}]
        data: dict[str, Any] = {
            "id": str(command.id if command else self.snowflakes.next()),
            "name": name,
            "type": 1,
            "options": opts,
        }
        if resolved:
            data["resolved"] = resolved
        if command is not None and command.guild_id is not None:
            data["guild_id"] = str(command.guild_id)
        return data

    async def send_slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: FakeUser,
        channel: FakeChannel,
        guild: FakeGuild | None = None,
        attachments: Mapping[str, Any] | None = None,
        subcommand: str | None = None,
        validate: bool = True,
    ) -> InteractionHandle:
        """Deliver a slash command (INTERACTION_CREATE type 2) as Discord would.

        Option types come from the registered command. Attachment options accept a
        ``FakeAttachment`` (see ``add_attachment``), ``(filename, bytes)`` or bytes; they can
        also be passed in ``attachments``. ``subcommand`` is ``"sub"`` or ``"group sub"``.
        ``validate=False`` sends values the Discord client would refuse (out of range, unknown
        options, unregistered commands). ``guild`` is implied by ``channel``.
        """
        if guild is not None and channel.guild_id != guild.id:
            raise ValueError("channel is not in guild")
        data = self._command_data(
            name,
            options or {},
            channel,
            subcommand=subcommand,
            attachments=attachments,
            focused=None,
            validate=validate,
        )
        payload, real_guild = self._interaction_base(APPLICATION_COMMAND, user, channel, data)
        return self._register_interaction(payload, user, channel, real_guild)

    async def send_message_command(
        self, name: str, message: FakeMessage, *, user: FakeUser, validate: bool = True
    ) -> InteractionHandle:
        """Right-click ``message`` -> Apps -> ``name``: a message context-menu command.

        As Discord sends it: INTERACTION_CREATE type 2 whose ``data`` has ``type`` 3 (MESSAGE),
        ``target_id`` and the message in ``resolved.messages`` (with its content: Discord
        includes it for the app's own interaction, without the Message Content intent).
        """
        channel = self.channel(message.channel_id)
        if channel is None or message.deleted:
            raise ValueError("the message or its channel is gone")
        guild = self.guilds.get(channel.guild_id) if channel.guild_id else None
        command = self.find_command(name, guild)
        if validate and (command is None or command.data.get("type", 1) != 3):
            raise ValueError(f"{name!r} is not a registered message command")
        data: dict[str, Any] = {
            "id": str(command.id if command else self.snowflakes.next()),
            "name": name,
            "type": 3,
            "target_id": str(message.id),
            "resolved": {"messages": {str(message.id): message.payload()}},
        }
        if command is not None and command.guild_id is not None:
            data["guild_id"] = str(command.guild_id)
        payload, real_guild = self._interaction_base(APPLICATION_COMMAND, user, channel, data)
        return self._register_interaction(payload, user, channel, real_guild, target=message)

    async def send_autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        focused: str,
        *,
        user: FakeUser,
        channel: FakeChannel,
        subcommand: str | None = None,
        validate: bool = True,
    ) -> InteractionHandle:
        """Deliver an autocomplete interaction (type 4); ``options[focused]`` is the typed text."""
        data = self._command_data(
            name,
            options,
            channel,
            subcommand=subcommand,
            attachments=None,
            focused=focused,
            validate=validate,
        )
        payload, guild = self._interaction_base(AUTOCOMPLETE, user, channel, data)
        return self._register_interaction(payload, user, channel, guild)

    async def send_component_click(
        self,
        message: FakeMessage,
        custom_id: str,
        user: FakeUser,
        *,
        values: Sequence[str] | None = None,
    ) -> InteractionHandle:
        """Click a button (or choose ``values`` in a select menu) on a bot message."""
        if message.deleted:
            raise ValueError("the message was deleted")
        component = message.component(custom_id)
        if component is None:
            raise ValueError(
                f"message {message.id} has no component {custom_id!r}: {message.custom_ids()}"
            )
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        channel = self.channel(message.channel_id)
        if channel is None:
            raise ValueError("the message's channel is gone")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component.get("type", 2)}
        if values is not None:
            data["values"] = list(values)
        if "id" in component:
            data["id"] = component["id"]
        payload, guild = self._interaction_base(MESSAGE_COMPONENT, user, channel, data)
        payload["message"] = message.payload()
        return self._register_interaction(payload, user, channel, guild, target=message)

    async def send_modal_submit(
        self, opener: InteractionHandle, values: Mapping[str, str], *, user: FakeUser | None = None
    ) -> InteractionHandle:
        """Submit the modal the bot showed for ``opener``; ``values`` maps text input custom_id."""
        modal = opener.modal
        if modal is None:
            raise ValueError("the bot did not open a modal for this interaction")
        rows = []
        for comp in modal.get("components", []):
            inner = comp.get("components") or ([comp["component"]] if "component" in comp else [])
            row_children = [
                {"type": 4, "custom_id": c["custom_id"], "value": values.get(c["custom_id"], "")}
                for c in inner
                if "custom_id" in c
            ]
            rows.append({"type": comp.get("type", 1), "components": row_children})
        data = {"custom_id": modal["custom_id"], "components": rows}
        who = user or opener.user
        payload, guild = self._interaction_base(MODAL_SUBMIT, who, opener.channel, data)
        if opener.target_message is not None:
            payload["message"] = opener.target_message.payload()
        return self._register_interaction(
            payload, who, opener.channel, guild, target=opener.target_message
        )

    async def post_user_message(
        self, channel: FakeChannel, user: FakeUser, content: str
    ) -> FakeMessage:
        """A user message (MESSAGE_CREATE); bots see empty content without the privileged intent."""
        msg = FakeMessage(
            self.snowflakes.next(), channel.id, channel.guild_id, user, "user", content=content
        )
        self.messages_by_id[msg.id] = msg
        self._dispatch_to_guild(channel.guild_id, "MESSAGE_CREATE", msg.payload())
        return msg

    # ------------------------------------------------------------------ HTTP plumbing

    def _build_routes(self) -> list[_Route]:
        table: list[tuple[str, str, Any, bool]] = [
            ("GET", "/gateway", self._r_gateway, False),
            ("GET", "/gateway/bot", self._r_gateway_bot, True),
            ("GET", "/users/@me", self._r_me, True),
            ("POST", "/users/@me/channels", self._r_create_dm, True),
            ("GET", "/users/{user_id}", self._r_user, True),
            ("GET", "/oauth2/applications/@me", self._r_application, True),
            ("GET", "/applications/@me", self._r_application, True),
            ("GET", "/applications/{application_id}/commands", self._r_get_commands, True),
            ("PUT", "/applications/{application_id}/commands", self._r_put_commands, True),
            ("POST", "/applications/{application_id}/commands", self._r_post_command, True),
            (
                "GET",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self._r_get_commands,
                True,
            ),
            (
                "PUT",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self._r_put_commands,
                True,
            ),
            (
                "POST",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self._r_post_command,
                True,
            ),
            (
                "POST",
                "/interactions/{interaction_id}/{interaction_token}/callback",
                self._r_callback,
                False,
            ),
            ("POST", "/webhooks/{application_id}/{interaction_token}", self._r_followup, False),
            *(
                (
                    method,
                    "/webhooks/{application_id}/{interaction_token}/messages/@original",
                    self._r_webhook_message,
                    False,
                )
                for method in ("GET", "PATCH", "DELETE")
            ),
            (
                "GET",
                "/webhooks/{application_id}/{interaction_token}/messages/{message_id}",
                self._r_webhook_message,
                False,
            ),
            (
                "PATCH",
                "/webhooks/{application_id}/{interaction_token}/messages/{message_id}",
                self._r_webhook_message,
                False,
            ),
            (
                "DELETE",
                "/webhooks/{application_id}/{interaction_token}/messages/{message_id}",
                self._r_webhook_message,
                False,
            ),
            ("GET", "/channels/{channel_id}", self._r_get_channel, True),
            ("GET", "/channels/{channel_id}/messages", self._r_list_messages, True),
            ("POST", "/channels/{channel_id}/messages", self._r_post_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._r_channel_message, True),
            (
                "PATCH",
                "/channels/{channel_id}/messages/{message_id}",
                self._r_channel_message,
                True,
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}",
                self._r_channel_message,
                True,
            ),
            ("POST", "/channels/{channel_id}/typing", self._r_typing, True),
            ("GET", "/guilds/{guild_id}", self._r_get_guild, True),
            ("GET", "/guilds/{guild_id}/channels", self._r_guild_channels, True),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._r_guild_member, True),
        ]
        routes = []
        for method, template, handler, auth in table:
            pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template))
            routes.append(_Route(method, template, re.compile(f"^{pattern}$"), handler, auth))
        return routes

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if (
            path in (GATEWAY_PATH, RESUME_GATEWAY_PATH)
            and request.headers.get("Upgrade", "").lower() == "websocket"
        ):
            return await self._gateway(request)
        record = RecordedRequest(
            request.method,
            path,
            None,
            dict(request.query),
            {k: v for k, v in request.headers.items() if k.lower() != "authorization"},
        )
        self.requests.append(record)
        try:
            response = await self._route(request, record)
        except DiscordError as exc:
            if exc.violation:
                self._violate(exc.violation, exc.message, record)
            response = _json_response(exc.status, {"message": exc.message, "code": exc.code})
        except Exception as exc:  # a bug in the fake: make it loud
            log.exception("fake Discord failed on %s %s", request.method, path)
            self._violate("fake-internal-error", repr(exc), record)
            response = _json_response(500, {"message": "fake internal error", "code": 0})
        record.status = response.status
        self._notify()
        return response

    async def _route(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        path = request.path
        if request.method == "GET" and path.startswith("/attachments/"):
            record.route = "GET /attachments/{channel_id}/{attachment_id}/{filename}"
            return self._serve_cdn(path)
        if not path.startswith(API_PREFIX + "/"):
            return self._unknown(record)
        sub = path[len(API_PREFIX) :]
        for route in self._routes:
            if route.method != request.method:
                continue
            match = route.regex.match(sub)
            if match is None:
                continue
            record.route = route.key
            await self._read_body(request, record)
            if route.auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise DiscordError(401, 0, "401: Unauthorized")
            limited = self._rate_limited(route, sub, record)
            if limited is not None:
                return limited
            response = await route.handler(request, match.groupdict(), record)
            if response.status < 300:
                bucket = hashlib.sha1(route.key.encode()).hexdigest()[:16]
                response.headers.update(
                    {
                        "X-RateLimit-Limit": "50",
                        "X-RateLimit-Remaining": "49",
                        "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
                        "X-RateLimit-Reset-After": "1.000",
                        "X-RateLimit-Bucket": bucket,
                        "Via": "1.1 google",
                    }
                )
            return response
        return self._unknown(record)

    def _unknown(self, record: RecordedRequest) -> web.Response:
        self.unknown_requests.append(record)
        log.error("unknown route %s %s", record.method, record.path)
        return _json_response(404, {"message": "404: Not Found", "code": 0})

    async def _read_body(self, request: web.Request, record: RecordedRequest) -> None:
        if not request.body_exists:
            return
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, aiohttp.BodyPartReader):
                    raise DiscordError(400, 50035, "nested multipart", violation="bad-body")
                raw = bytes(await part.read(decode=False))
                if part.name == "payload_json":
                    record.json = json.loads(raw)
                elif part.filename is not None:
                    record.files.append(
                        UploadedFile(
                            part.name or "",
                            part.filename,
                            part.headers.get(aiohttp.hdrs.CONTENT_TYPE),
                            raw,
                        )
                    )
                else:
                    raise DiscordError(
                        400, 50035, f"unexpected form field {part.name}", violation="bad-body"
                    )
            return
        text = await request.text()
        if not text:
            return
        try:
            record.json = json.loads(text)
        except ValueError as exc:
            raise DiscordError(
                400, 50109, "The request body contains invalid JSON.", violation="bad-body"
            ) from exc

    def _rate_limited(
        self, route: _Route, sub: str, record: RecordedRequest
    ) -> web.Response | None:
        now = time.monotonic()
        cooldown_key = f"{route.method} {sub}"
        for key in (cooldown_key, "global"):
            until = self._cooldowns.get(key)
            if until is not None and now < until - 0.01:
                self._violate(
                    "rate-limit-ignored",
                    f"request {key} came {until - now:.3f}s before retry_after elapsed",
                    record,
                )
        for injection in self.rate_limits:
            if not injection.matches(route.key):
                continue
            if injection.remaining <= 0:
                injection.passed.append(record)
                continue
            injection.served.append(record)
            retry = injection.retry_after
            self._cooldowns["global" if injection.is_global else cooldown_key] = now + retry
            headers = {
                "Via": "1.1 google",
                "Retry-After": str(max(1, math.ceil(retry))),
                "X-RateLimit-Scope": "global" if injection.is_global else "user",
            }
            if injection.is_global:
                headers["X-RateLimit-Global"] = "true"
            else:
                headers.update(
                    {
                        "X-RateLimit-Limit": "50",
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": f"{time.time() + retry:.3f}",
                        "X-RateLimit-Reset-After": f"{retry:.3f}",
                        "X-RateLimit-Bucket": hashlib.sha1(route.key.encode()).hexdigest()[:16],
                    }
                )
            body = {
                "message": "You are being rate limited.",
                "retry_after": retry,
                "global": injection.is_global,
                "code": 0,
            }
            return _json_response(429, body, headers)
        return None

    def _serve_cdn(self, path: str) -> web.Response:
        parts = path.split("/")
        if len(parts) == 5 and parts[3].isdigit() and int(parts[3]) in self.attachments_by_id:
            att = self.attachments_by_id[int(parts[3])]
            return web.Response(
                body=att.data,
                headers={"Content-Type": att.content_type or "application/octet-stream"},
            )
        return web.Response(status=404, text="Not Found")

    # ------------------------------------------------------------------ REST: identity

    async def _r_gateway(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        return _json_response(200, {"url": self.gateway_url})

    async def _r_gateway_bot(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        return _json_response(
            200,
            {
                "url": self.gateway_url,
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14400000,
                    "max_concurrency": 1,
                },
            },
        )

    async def _r_me(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        data = self.bot_user.payload()
        data.update(verified=True, mfa_enabled=False, email=None, locale="en-US", bio="")
        return _json_response(200, data)

    async def _r_user(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        user = self.users.get(int(p["user_id"])) if p["user_id"].isdigit() else None
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return _json_response(200, user.payload())

    async def _r_create_dm(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        user = self.users.get(int((rec.json or {}).get("recipient_id", 0)))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return _json_response(200, self.dm_channel(user).payload())

    async def _r_application(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        return _json_response(
            200,
            {
                "id": str(self.application_id),
                "name": self.bot_user.username,
                "icon": None,
                "description": "fake application",
                "summary": "",
                "type": None,
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "bot": self.bot_user.payload(),
                "terms_of_service_url": None,
                "privacy_policy_url": None,
                "owner": self.app_owner.payload(),
                "verify_key": "0" * 64,
                "team": None,
                "guild_id": None,
                "primary_sku_id": None,
                "slug": None,
                "cover_image": None,
                "flags": 0,
                "approximate_guild_count": len(self.guilds),
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "tags": [],
                "install_params": None,
                "integration_types_config": {"0": {}},
                "custom_install_url": None,
                "hook": True,
                "is_monetized": False,
            },
        )

    # ------------------------------------------------------------------ REST: commands

    def _check_app(self, p: dict[str, str]) -> int | None:
        if p.get("application_id") != str(self.application_id):
            raise DiscordError(404, 10002, "Unknown Application", violation="wrong-application")
        guild_id = p.get("guild_id")
        if guild_id is None:
            return None
        if not guild_id.isdigit() or int(guild_id) not in self.guilds:
            raise DiscordError(403, 50001, "Missing Access", violation="unknown-guild")
        return int(guild_id)

    async def _r_get_commands(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        guild_id = self._check_app(p)
        cmds = self.commands.get(guild_id, {})
        return _json_response(200, [c.payload(self.application_id) for c in cmds.values()])

    def _register_command(self, guild_id: int | None, data: dict[str, Any]) -> RegisteredCommand:
        existing = self.commands.get(guild_id, {}).get(data.get("name", ""))
        cmd_id = existing.id if existing else self.snowflakes.next()
        return RegisteredCommand(cmd_id, guild_id, data, next(self._command_versions))

    async def _r_put_commands(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        guild_id = self._check_app(p)
        body = rec.json
        if not isinstance(body, list):
            raise DiscordError(
                400, 50035, "Invalid Form Body: expected a list", violation="bad-body"
            )
        errors = [e for cmd in body for e in command_errors(cmd)]
        if len(body) > 100:
            errors.append("at most 100 commands")
        if errors:
            raise DiscordError(
                400, 50035, "Invalid Form Body: " + "; ".join(errors), violation="invalid-command"
            )
        new = {}
        for data in body:
            cmd = self._register_command(guild_id, data)
            new[cmd.name] = cmd
        self.commands[guild_id] = new
        self.command_syncs.append((guild_id, list(new)))
        return _json_response(200, [c.payload(self.application_id) for c in new.values()])

    async def _r_post_command(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        guild_id = self._check_app(p)
        data = rec.json or {}
        errors = command_errors(data)
        if errors:
            raise DiscordError(
                400, 50035, "Invalid Form Body: " + "; ".join(errors), violation="invalid-command"
            )
        cmd = self._register_command(guild_id, data)
        self.commands.setdefault(guild_id, {})[cmd.name] = cmd
        return _json_response(201, cmd.payload(self.application_id))

    # ------------------------------------------------------------------ REST: messages

    def _new_message(
        self,
        channel_id: int,
        guild_id: int | None,
        kind: str,
        data: dict[str, Any],
        files: list[UploadedFile],
        *,
        handle: InteractionHandle | None = None,
        flags: int = 0,
    ) -> FakeMessage:
        msg = FakeMessage(
            self.snowflakes.next(),
            channel_id,
            guild_id,
            self.bot_user,
            kind,
            flags=flags,
            tts=bool(data.get("tts")),
            interaction_id=handle.id if handle else None,
            message_reference=data.get("message_reference"),
            application_id=self.application_id if handle else None,
        )
        if handle is not None:
            msg.interaction_metadata = {
                "id": str(handle.id),
                "type": handle.type,
                "user": handle.user.payload(),
                "authorizing_integration_owners": handle.payload.get(
                    "authorizing_integration_owners", {}
                ),
            }
        self._apply(msg, data, files, creating=True)
        self.messages_by_id[msg.id] = msg
        if self.emit_message_events and not msg.ephemeral:
            self._message_event(msg, "MESSAGE_CREATE", msg.payload())
        return msg

    def _message_event(self, msg: FakeMessage, event: str, data: dict[str, Any]) -> None:
        intent = INTENT_GUILD_MESSAGES if msg.guild_id else INTENT_DIRECT_MESSAGES
        for session in self._sessions_for(msg.guild_id):
            if session.intents & intent:
                session.dispatch(event, data)
                break

    def _apply(
        self, msg: FakeMessage, data: dict[str, Any], files: list[UploadedFile], *, creating: bool
    ) -> None:
        """Apply a create/edit payload (JSON or payload_json + files[n]) to a message."""
        if "content" in data:
            msg.content = data["content"] or ""
        if "embeds" in data:
            msg.embeds = list(data["embeds"] or [])
        elif "embed" in data:
            msg.embeds = [data["embed"]] if data["embed"] else []
        if "components" in data:
            msg.components = list(data["components"] or [])
        if "allowed_mentions" in data:
            msg.allowed_mentions = data["allowed_mentions"]
        if not creating and "flags" in data and data["flags"] is not None:
            keep = msg.flags & ~MessageFlag.SUPPRESS_EMBEDS
            msg.flags = keep | (int(data["flags"]) & MessageFlag.SUPPRESS_EMBEDS)
        by_field = {f.field_name: f for f in files}
        if "attachments" in data and data["attachments"] is not None:
            existing = {a.id: a for a in msg.attachments}
            new_list: list[FakeAttachment] = []
            for entry in data["attachments"]:
                ident = int(entry.get("id", -1))
                if ident in existing:
                    new_list.append(existing[ident])
                    continue
                upload = by_field.pop(f"files[{ident}]", None)
                if upload is None:
                    raise DiscordError(
                        400,
                        50035,
                        f"attachment {ident} has no files[{ident}]",
                        violation="bad-attachments",
                    )
                new_list.append(
                    self._store_attachment(
                        msg.channel_id,
                        entry.get("filename") or upload.filename,
                        upload.data,
                        upload.content_type,
                        description=entry.get("description"),
                        ephemeral=msg.ephemeral,
                    )
                )
            msg.attachments = new_list
        for upload in by_field.values():
            msg.attachments.append(
                self._store_attachment(
                    msg.channel_id,
                    upload.filename,
                    upload.data,
                    upload.content_type,
                    ephemeral=msg.ephemeral,
                )
            )
        if not creating:
            msg.edited_at = iso_now()
        msg.history.append({**data, "_files": [f.filename for f in files], "_flags": msg.flags})

    def _check_message(
        self,
        data: dict[str, Any],
        files: list[UploadedFile],
        rec: RecordedRequest,
        *,
        creating: bool,
    ) -> None:
        errors = message_errors(data)
        if errors:
            raise DiscordError(
                400, 50035, "Invalid Form Body: " + "; ".join(errors), violation="invalid-message"
            )
        if creating and not (
            data.get("content")
            or data.get("embeds")
            or files
            or data.get("components")
            or data.get("sticker_ids")
            or data.get("poll")
        ):
            raise DiscordError(
                400, 50006, "Cannot send an empty message", violation="empty-message"
            )

    def _edit(
        self,
        msg: FakeMessage,
        data: dict[str, Any],
        files: list[UploadedFile],
        rec: RecordedRequest,
    ) -> None:
        self._check_message(data, files, rec, creating=False)
        self._apply(msg, data, files, creating=False)
        if msg.loading:
            msg.flags &= ~MessageFlag.LOADING
        if self.emit_message_events and not msg.ephemeral:
            self._message_event(msg, "MESSAGE_UPDATE", msg.payload())

    def _delete(self, msg: FakeMessage) -> None:
        msg.deleted = True
        if self.emit_message_events and not msg.ephemeral:
            payload = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id:
                payload["guild_id"] = str(msg.guild_id)
            self._message_event(msg, "MESSAGE_DELETE", payload)

    def _bot_can(self, channel: FakeChannel, needed: int) -> bool:
        if channel.guild_id is None:
            return True
        guild = self.guilds[channel.guild_id]
        return guild.permissions_of(self.bot_user.id) & needed == needed

    def _channel_or_404(self, p: dict[str, str]) -> FakeChannel:
        channel = self.channel(int(p["channel_id"])) if p["channel_id"].isdigit() else None
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        return channel

    def _message_or_404(self, channel: FakeChannel, message_id: str) -> FakeMessage:
        msg = self.messages_by_id.get(int(message_id)) if message_id.isdigit() else None
        if msg is None or msg.deleted or msg.channel_id != channel.id or msg.ephemeral:
            raise DiscordError(404, 10008, "Unknown Message")
        return msg

    async def _r_get_channel(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        return _json_response(200, self._channel_or_404(p).payload())

    async def _r_list_messages(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        """Newest first, as Discord pages history: ``limit`` 1-100 (default 50), and at most
        one of ``before``/``after``/``around`` (message ids). Without the Message Content
        intent, other users' messages come with empty content, embeds and attachments."""
        channel = self._channel_or_404(p)
        try:
            limit = int(req.query.get("limit", "50"))
            anchors = {
                k: int(req.query[k]) for k in ("before", "after", "around") if k in req.query
            }
        except ValueError:
            raise DiscordError(400, 50035, "Invalid Form Body", violation="bad query") from None
        if not 1 <= limit <= 100 or len(anchors) > 1:
            raise DiscordError(
                400, 50035, f"Invalid Form Body (limit {limit})", violation="history-query"
            )
        msgs = [
            m
            for m in self.messages_by_id.values()
            if m.channel_id == channel.id and not m.deleted and not m.ephemeral
        ]
        msgs.sort(key=lambda m: m.id, reverse=True)
        if "before" in anchors:
            msgs = [m for m in msgs if m.id < anchors["before"]][:limit]
        elif "after" in anchors:
            msgs = [m for m in msgs if m.id > anchors["after"]][-limit:]
        elif "around" in anchors:
            older = [m for m in msgs if m.id <= anchors["around"]][: (limit + 1) // 2]
            newer = [m for m in msgs if m.id > anchors["around"]]
            msgs = newer[len(newer) - limit // 2 :] if limit // 2 else []
            msgs += older
        else:
            msgs = msgs[:limit]
        self.history_pages.append(rec)
        content = any(
            s.intents & INTENT_MESSAGE_CONTENT for s in self._sessions_for(channel.guild_id)
        )
        return _json_response(200, [self._visible(m, content) for m in msgs])

    def _visible(self, msg: FakeMessage, message_content: bool) -> dict[str, Any]:
        data = msg.payload()
        if not message_content and msg.kind == "user" and msg.guild_id is not None:
            mentioned = str(self.bot_user.id) in (msg.content or "")
            if not mentioned:
                data.update(content="", embeds=[], attachments=[], components=[])
        return data

    def add_history(
        self,
        channel: FakeChannel,
        messages: Sequence[tuple[FakeUser, str]],
        *,
        start: float | None = None,
        step: float = 60.0,
        webhook_ids: Mapping[int, int] | None = None,
        types: Mapping[int, int] | None = None,
    ) -> list[FakeMessage]:
        """Messages already in ``channel`` (no gateway events), oldest first, ``step`` seconds
        apart from ``start`` (default: so that the last is a minute ago). ``webhook_ids`` maps
        a position to the webhook that posted that message; ``types`` maps a position to its
        Discord message type, for system messages: 7 a member joined (the author is that
        member, the content empty), 18 a thread created (its creator, the thread's name), 6 a
        message pinned (who pinned it, empty)... Their ``message_reference`` (to the thread,
        to the pinned message) is not set."""
        first = time.time() - step * len(messages) if start is None else start
        created = []
        for i, (user, content) in enumerate(messages):
            at = first + i * step
            msg = FakeMessage(
                self.snowflakes.next(at), channel.id, channel.guild_id, user, "user",
                content=content,
                created_at=dt.datetime.fromtimestamp(at, dt.UTC).isoformat(),
                webhook_id=(webhook_ids or {}).get(i),
                message_type=(types or {}).get(i, 0),
            )  # fmt: skip
            self.messages_by_id[msg.id] = msg
            created.append(msg)
        self.notify()
        return created

    async def _r_post_message(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        channel = self._channel_or_404(p)
        data = rec.json or {}
        needed = Perm.VIEW_CHANNEL | Perm.SEND_MESSAGES | (Perm.ATTACH_FILES if rec.files else 0)
        if not self._bot_can(channel, needed):
            raise DiscordError(403, 50013, "Missing Permissions")
        self._check_message(data, rec.files, rec, creating=True)
        flags = int(data.get("flags") or 0)
        if flags & ~(MessageFlag.SUPPRESS_EMBEDS | MessageFlag.SUPPRESS_NOTIFICATIONS):
            raise DiscordError(
                400,
                50035,
                f"Invalid Form Body: flags {flags} not allowed",
                violation="invalid-message",
            )
        msg = self._new_message(
            channel.id, channel.guild_id, "channel", data, rec.files, flags=flags
        )
        return _json_response(200, msg.payload())

    async def _r_channel_message(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        channel = self._channel_or_404(p)
        msg = self._message_or_404(channel, p["message_id"])
        if req.method == "GET":
            return _json_response(200, msg.payload())
        if msg.author.id != self.bot_user.id and req.method == "PATCH":
            raise DiscordError(
                403,
                50005,
                "Cannot edit a message authored by another user",
                violation="edit-foreign-message",
            )
        if req.method == "DELETE":
            self._delete(msg)
            return web.Response(status=204)
        self._edit(msg, rec.json or {}, rec.files, rec)
        return _json_response(200, msg.payload())

    async def _r_typing(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        self._channel_or_404(p)
        return web.Response(status=204)

    async def _r_get_guild(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        guild = self._guild_or_404(p)
        data = guild.create_payload(self._bot_member(guild))
        for key in ("members", "channels", "threads", "presences", "voice_states", "joined_at"):
            data.pop(key, None)
        return _json_response(200, data)

    def _guild_or_404(self, p: dict[str, str]) -> FakeGuild:
        guild = self.guilds.get(int(p["guild_id"])) if p["guild_id"].isdigit() else None
        if guild is None:
            raise DiscordError(404, 10004, "Unknown Guild")
        return guild

    async def _r_guild_channels(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        guild = self._guild_or_404(p)
        return _json_response(200, [c.payload() for c in guild.channels.values()])

    async def _r_guild_member(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        guild = self._guild_or_404(p)
        member = guild.members.get(int(p["user_id"])) if p["user_id"].isdigit() else None
        if member is None:
            raise DiscordError(404, 10007, "Unknown Member")
        return _json_response(200, member.payload())

    # ------------------------------------------------------------------ REST: interactions

    def _handle_for_webhook(self, p: dict[str, str]) -> InteractionHandle:
        handle = self._interactions_by_token.get(p["interaction_token"])
        if p["application_id"] != str(self.application_id):
            raise DiscordError(404, 10015, "Unknown Webhook", violation="wrong-application")
        if handle is None:
            raise DiscordError(404, 10015, "Unknown Webhook", violation="unknown-webhook")
        if handle.expired:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return handle

    async def _r_callback(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.StreamResponse:
        handle = (
            self.interactions.get(int(p["interaction_id"]))
            if p["interaction_id"].isdigit()
            else None
        )
        if handle is None or handle.token != p["interaction_token"]:
            raise DiscordError(404, 10062, "Unknown interaction", violation="unknown-interaction")
        handle.initial_responses += 1
        if handle.expired:
            raise DiscordError(404, 10062, "Unknown interaction")
        age = time.monotonic() - handle.created_at
        if age > self.ack_deadline:
            raise DiscordError(
                404,
                10062,
                "Unknown interaction",
                violation=f"late-ack ({age:.2f}s > {self.ack_deadline}s)",
            )
        if handle.response_type is not None:
            raise DiscordError(
                400, 40060, "Interaction has already been acknowledged.", violation="double-ack"
            )
        body = rec.json or {}
        ctype = body.get("type")
        data: dict[str, Any] = body.get("data") or {}
        allowed = {
            APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL},
            MESSAGE_COMPONENT: {
                CHANNEL_MESSAGE,
                DEFERRED_CHANNEL_MESSAGE,
                DEFERRED_UPDATE_MESSAGE,
                UPDATE_MESSAGE,
                MODAL,
            },
            AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
            MODAL_SUBMIT: {
                CHANNEL_MESSAGE,
                DEFERRED_CHANNEL_MESSAGE,
                DEFERRED_UPDATE_MESSAGE,
                UPDATE_MESSAGE,
            },
        }[handle.type]
        if ctype not in allowed:
            raise DiscordError(
                400,
                50035,
                f"Invalid Form Body: callback type {ctype} is not "
                f"valid for interaction type {handle.type}",
                violation="invalid-callback-type",
            )
        if ctype == AUTOCOMPLETE_RESULT:
            errors = autocomplete_errors(data)
            if errors:
                raise DiscordError(
                    400,
                    50035,
                    "Invalid Form Body: " + "; ".join(errors),
                    violation="invalid-autocomplete",
                )
        elif ctype in (CHANNEL_MESSAGE, UPDATE_MESSAGE):
            self._check_message(data, rec.files, rec, creating=ctype == CHANNEL_MESSAGE)
        elif ctype == MODAL and not (data.get("custom_id") and data.get("title")):
            raise DiscordError(
                400,
                50035,
                "Invalid Form Body: modal needs custom_id and title",
                violation="invalid-modal",
            )
        handle.callback_request = rec
        handle.response_data = data
        resource: dict[str, Any] | None = None
        guild_id = handle.guild.id if handle.guild else None
        keep = (
            MessageFlag.EPHEMERAL | MessageFlag.SUPPRESS_EMBEDS | MessageFlag.SUPPRESS_NOTIFICATIONS
        )
        if ctype == CHANNEL_MESSAGE:
            flags = int(data.get("flags") or 0) & keep
            handle.original = self._new_message(
                handle.channel.id, guild_id, "original", data, rec.files, handle=handle, flags=flags
            )
            resource = {"type": ctype, "message": handle.original.payload()}
        elif ctype == DEFERRED_CHANNEL_MESSAGE:
            flags = MessageFlag.LOADING | (int(data.get("flags") or 0) & MessageFlag.EPHEMERAL)
            handle.original = self._new_message(
                handle.channel.id, guild_id, "original", {}, [], handle=handle, flags=flags
            )
            resource = {"type": ctype, "message": handle.original.payload()}
        elif ctype in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            target = handle.target_message
            if target is None:
                raise DiscordError(
                    400, 50035, "no message to update", violation="invalid-callback-type"
                )
            handle.original = target
            if ctype == UPDATE_MESSAGE:
                self._edit(target, data, rec.files, rec)
                resource = {"type": ctype, "message": target.payload()}
        elif ctype == AUTOCOMPLETE_RESULT:
            handle.autocomplete_choices = list(data.get("choices") or [])
        elif ctype == MODAL:
            handle.modal = data
        handle.response_type = ctype
        self._notify()
        if req.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        callback: dict[str, Any] = {"id": str(handle.id), "type": handle.type}
        if handle.original is not None and ctype != DEFERRED_UPDATE_MESSAGE:
            callback["response_message_id"] = str(handle.original.id)
            callback["response_message_loading"] = handle.original.loading
            callback["response_message_ephemeral"] = handle.original.ephemeral
        result: dict[str, Any] = {"interaction": callback}
        if resource is not None:
            result["resource"] = resource
        return _json_response(200, result)

    async def _r_followup(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.Response:
        handle = self._handle_for_webhook(p)
        if handle.response_type is None:
            raise DiscordError(
                404, 10015, "Unknown Webhook", violation="followup-before-initial-response"
            )
        data = rec.json or {}
        self._check_message(data, rec.files, rec, creating=True)
        original = handle.original
        if (
            handle.response_type == DEFERRED_CHANNEL_MESSAGE
            and original is not None
            and original.loading
            and not original.deleted
        ):
            # Discord: the first followup after a deferred response replaces the 'thinking' message
            self._edit(original, data, rec.files, rec)
            msg = original
        else:
            flags = int(data.get("flags") or 0) & (
                MessageFlag.EPHEMERAL
                | MessageFlag.SUPPRESS_EMBEDS
                | MessageFlag.SUPPRESS_NOTIFICATIONS
            )
            guild_id = handle.guild.id if handle.guild else None
            msg = self._new_message(
                handle.channel.id, guild_id, "followup", data, rec.files, handle=handle, flags=flags
            )
        handle.followups.append(msg)
        if req.query.get("wait") in ("1", "true", "True"):
            return _json_response(200, msg.payload())
        return web.Response(status=204)

    async def _r_webhook_message(
        self, req: web.Request, p: dict[str, str], rec: RecordedRequest
    ) -> web.StreamResponse:
        handle = self._handle_for_webhook(p)
        mid = p.get("message_id", "@original")
        if mid == "@original":
            msg = handle.original
            if msg is None:
                raise DiscordError(
                    404, 10008, "Unknown Message", violation="original-before-initial-response"
                )
        else:
            msg = next((m for m in handle.messages() if str(m.id) == mid), None)
            if (
                msg is None
                and handle.target_message is not None
                and str(handle.target_message.id) == mid
            ):
                msg = handle.target_message
            if msg is None:
                raise DiscordError(404, 10008, "Unknown Message")
        if msg.deleted:
            raise DiscordError(404, 10008, "Unknown Message")
        if req.method == "GET":
            return _json_response(200, msg.payload())
        if req.method == "DELETE":
            self._delete(msg)
            return web.Response(status=204)
        self._edit(msg, rec.json or {}, rec.files, rec)
        return _json_response(200, msg.payload())

    # ------------------------------------------------------------------ gateway

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        self.gateway_connects.append(request.path_qs)
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        conn = _Connection(ws, request, request.path)
        self._connections.append(conn)
        compress = query.get("compress")
        if compress == "zlib-stream":
            conn.compressor = zlib.compressobj()
        writer = asyncio.create_task(self._gateway_writer(conn))
        try:
            if query.get("v") != "10":
                self._violate("gateway", f"unsupported API version {query.get('v')}")
                conn.queue.put_nowait(("close", 4012))
            elif query.get("encoding", "json") != "json":
                self._violate("gateway", f"unsupported encoding {query.get('encoding')}")
                conn.queue.put_nowait(("close", 4002))
            elif compress not in (None, "zlib-stream"):
                self._violate("gateway", f"unsupported compression {compress}")
                conn.queue.put_nowait(("close", 4002))
            else:
                conn.queue.put_nowait(
                    {"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}
                )
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._gateway_receive(conn, json.loads(msg.data))
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    self._violate("gateway", "client sent a binary frame")
        finally:
            conn.closed = True
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            conn.queue.put_nowait(("stop", None))
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(writer, 5)
            self._connections.remove(conn)
            self._notify()
        return ws

    async def _gateway_writer(self, conn: _Connection) -> None:
        ws = conn.ws
        while True:
            item = await conn.queue.get()
            if isinstance(item, tuple):
                action, code = item
                if action == "close":
                    if code is None:
                        transport = conn.request.transport
                        if transport is not None:
                            transport.abort()
                    else:
                        await ws.close(code=code, message=b"fake Discord closed the connection")
                return
            if ws.closed:
                return
            text = json.dumps(item)
            try:
                if conn.compressor is not None:
                    data = conn.compressor.compress(text.encode()) + conn.compressor.flush(
                        zlib.Z_SYNC_FLUSH
                    )
                    await ws.send_bytes(data)
                else:
                    await ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    def _close_conn(self, conn: _Connection, code: int) -> None:
        conn.closed = True
        conn.queue.put_nowait(("close", code))

    def _gateway_receive(self, conn: _Connection, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        data = payload.get("d")
        if op == OP_HEARTBEAT:
            self.heartbeat_count += 1
            conn.queue.put_nowait({"op": OP_HEARTBEAT_ACK})
        elif op == OP_IDENTIFY:
            self._identify(conn, data or {})
        elif op == OP_RESUME:
            self._resume(conn, data or {})
        elif op == OP_PRESENCE:
            self.presence_updates.append(data or {})
        elif op == OP_REQUEST_MEMBERS:
            guild = self.guilds.get(int((data or {}).get("guild_id", 0)))
            if guild is not None and conn.session is not None:
                chunk: dict[str, Any] = {
                    "guild_id": str(guild.id),
                    "members": [m.payload() for m in guild.members.values()],
                    "chunk_index": 0,
                    "chunk_count": 1,
                    "not_found": [],
                }
                nonce = (data or {}).get("nonce")
                if nonce:
                    chunk["nonce"] = nonce
                conn.session.dispatch("GUILD_MEMBERS_CHUNK", chunk)
        elif op == OP_VOICE_STATE:
            pass
        else:
            self._violate("gateway", f"unknown opcode {op}")
            self._close_conn(conn, 4001)
        self._notify()

    def _identify(self, conn: _Connection, data: dict[str, Any]) -> None:
        if conn.session is not None:
            self._close_conn(conn, 4005)
            self._violate("gateway", "IDENTIFY sent twice on one connection")
            return
        if data.get("token") != self.token:
            self._close_conn(conn, 4004)
            return
        intents = data.get("intents")
        if not isinstance(intents, int):
            self._close_conn(conn, 4013)
            self._violate("gateway", "IDENTIFY without intents")
            return
        if intents & PRIVILEGED_INTENTS and not self.allow_privileged_intents:
            self._close_conn(conn, 4014)
            return
        shard_raw = data.get("shard")
        shard: tuple[int, int] | None = None
        if shard_raw is not None:
            shard = (int(shard_raw[0]), int(shard_raw[1]))
            if not 0 <= shard[0] < shard[1]:
                self._close_conn(conn, 4010)
                return
        session = _GatewaySession(secrets.token_hex(16), shard, intents)
        self._sessions[session.id] = session
        # A new session of the same [shard_id, num_shards] replaces the old one (the process
        # restarted); sessions of another shard count stay (resharding runs both sets).
        self._active_sessions = [
            s
            for s in self._active_sessions
            if not (s.shard is None or shard is None or s.shard == shard)
        ]
        self._active_sessions.append(session)
        session.conn = conn
        conn.session = session
        self.identify_count += 1
        owned = [g for g in self.guilds.values() if session.owns_guild(g.id)]
        ready: dict[str, Any] = {
            "v": 10,
            "user": {**self.bot_user.payload(), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in owned],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["rotterdam"],
            "auth": {},
            "_trace": ["fake-discord"],
        }
        if shard is not None:
            ready["shard"] = list(shard)
        session.dispatch("READY", ready)
        for guild in owned:
            session.dispatch("GUILD_CREATE", guild.create_payload(self._bot_member(guild)))

    def _resume(self, conn: _Connection, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            self._close_conn(conn, 4004)
            return
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or conn.session is not None:
            self.invalid_session_count += 1
            conn.queue.put_nowait({"op": OP_INVALID_SESSION, "d": False})
            return
        seq = data.get("seq") or 0
        if session.conn is not None and session.conn is not conn:
            old = session.conn
            self._close_conn(old, 4000)
        session.conn = conn
        conn.session = session
        if session not in self._active_sessions:
            self._active_sessions.append(session)
        for payload in session.log:
            if payload["s"] > seq:
                conn.queue.put_nowait(payload)
        session.resumes += 1
        self.resume_count += 1
        session.dispatch("RESUMED", {"_trace": ["fake-discord"]})
