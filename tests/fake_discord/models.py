"""Data model of the fake Discord: users, guilds, channels, messages, recorded requests.

Everything here is plain data plus the JSON payload builders that the server sends to the real
discord.py client. Field sets follow Discord's API v10 documentation and what discord.py's parsers
read (state.py, guild.py, member.py, message.py, interactions.py).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

DISCORD_EPOCH_MS = 1420070400000


class Perm:
    """Permission bits (https://discord.com/developers/docs/topics/permissions)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    MANAGE_ROLES = 1 << 28
    USE_APPLICATION_COMMANDS = 1 << 31
    ALL = (1 << 53) - 1

    #: what @everyone gets in a fresh guild (roughly), and what a plain member can do
    DEFAULT_MEMBER = (
        VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | ADD_REACTIONS
        | USE_EXTERNAL_EMOJIS
        | USE_APPLICATION_COMMANDS
        | CREATE_INSTANT_INVITE
    )
    #: what the bot's managed role gets from the invite URL
    DEFAULT_BOT = (
        VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | ADD_REACTIONS
        | USE_EXTERNAL_EMOJIS
        | USE_APPLICATION_COMMANDS
    )


class MessageFlag:
    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7
    SUPPRESS_NOTIFICATIONS = 1 << 12


class SnowflakeFactory:
    """Increasing snowflakes stamped 'now' (discord.py derives created_at from them)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self, at: float | None = None) -> int:
        """A new snowflake stamped ``at`` (a Unix time; default now)."""
        ms = int((time.time() if at is None else at) * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._counter) & 0x3FFFFF)


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass
class FakeUser:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    locale: str = "en-US"  # the client's language: an interaction's ``locale``

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "avatar_decoration_data": None,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "primary_guild": None,
            "collectibles": None,
            "clan": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class FakeRole:
    id: int
    name: str
    permissions: int = 0
    position: int = 0
    managed: bool = False

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "description": None,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class FakeChannel:
    """A guild text channel (type 0) or a DM channel (type 1, guild_id None)."""

    id: int
    name: str
    guild_id: int | None
    type: int = 0
    position: int = 0
    recipient: FakeUser | None = None

    @property
    def is_dm(self) -> bool:
        return self.guild_id is None

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def payload(self, *, with_guild_id: bool = True) -> dict[str, Any]:
        if self.type == 1:
            recipients = [self.recipient.payload()] if self.recipient else []
            return {
                "id": str(self.id),
                "type": 1,
                "last_message_id": None,
                "flags": 0,
                "recipients": recipients,
            }
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [],
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }
        if with_guild_id and self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        return data


@dataclass
class FakeMember:
    user: FakeUser
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=iso_now)

    def payload(self) -> dict[str, Any]:
        return {
            "user": self.user.payload(),
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in self.role_ids],
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
            "unusual_dm_activity_until": None,
        }


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, FakeRole] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)
    # The server's language (Server Settings -> Community): ``guild_locale`` of interactions.
    preferred_locale: str = "en-US"

    @property
    def everyone_role(self) -> FakeRole:
        return self.roles[self.id]

    def permissions_of(self, user_id: int) -> int:
        """Base permissions (channel overwrites are not modelled)."""
        if user_id == self.owner_id:
            return Perm.ALL
        member = self.members.get(user_id)
        perms = self.everyone_role.permissions
        if member is not None:
            for role_id in member.role_ids:
                role = self.roles.get(role_id)
                if role is not None:
                    perms |= role.permissions
        if perms & Perm.ADMINISTRATOR:
            return Perm.ALL
        return perms

    def shard_id(self, shard_count: int) -> int:
        return (self.id >> 22) % shard_count

    def create_payload(self, bot_member: FakeMember) -> dict[str, Any]:
        members = [m.payload() for m in self.members.values() if m.user.id != bot_member.user.id]
        members.append(bot_member.payload())
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "icon_hash": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "region": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [r.payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_members": 500000,
            "max_presences": None,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": self.preferred_locale,
            "nsfw": False,
            "nsfw_level": 0,
            "incidents_data": None,
            "joined_at": bot_member.joined_at,
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(members),
            "voice_states": [],
            "members": members,
            "channels": [c.payload(with_guild_id=False) for c in self.channels.values()],
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "activity_instances": [],
            "version": 0,
        }


@dataclass
class FakeAttachment:
    """A file on the fake CDN: uploaded by a test (command option) or by the bot (message file)."""

    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    declared_size: int | None = None
    description: str | None = None
    ephemeral: bool = False

    @property
    def size(self) -> int:
        return self.declared_size if self.declared_size is not None else len(self.data)

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
        }
        if self.content_type is not None:
            data["content_type"] = self.content_type
        if self.description is not None:
            data["description"] = self.description
        if self.ephemeral:
            data["ephemeral"] = True
        if self.content_type == "image/png" and self.data[:8] == b"\x89PNG\r\n\x1a\n":
            data["width"] = int.from_bytes(self.data[16:20], "big")
            data["height"] = int.from_bytes(self.data[20:24], "big")
        return data


@dataclass
class UploadedFile:
    """A multipart part ``files[n]`` as it arrived."""

    field_name: str
    filename: str
    content_type: str | None
    data: bytes


_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


@dataclass
class FakeMessage:
    """A message as the fake stores it; tests read these fields (``m.content``, ``m.embeds``...)."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    kind: str  # "original" | "followup" | "channel" | "user"
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None
    flags: int = 0
    tts: bool = False
    interaction_id: int | None = None
    message_reference: dict[str, Any] | None = None
    created_at: str = field(default_factory=iso_now)
    edited_at: str | None = None
    deleted: bool = False
    #: every state the message went through: the creating payload, then each edit payload
    history: list[dict[str, Any]] = field(default_factory=list)
    application_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    webhook_id: int | None = None  # a user-kind message posted by a webhook
    #: a user-kind message's Discord type (0 default; 7 a member joined, 18 a thread created...)
    message_type: int = 0

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while a deferred response still shows 'thinking'."""
        return bool(self.flags & MessageFlag.LOADING)

    @property
    def edit_count(self) -> int:
        return max(0, len(self.history) - 1)

    def text(self) -> str:
        """Content plus all embed text (title, description, fields, footer, author)."""
        parts = [self.content]
        for embed in self.embeds:
            for key in ("title", "description"):
                if embed.get(key):
                    parts.append(str(embed[key]))
            for fld in embed.get("fields", []):
                parts.append(f"{fld.get('name', '')}: {fld.get('value', '')}")
            for key in ("footer", "author"):
                sub = embed.get(key)
                if isinstance(sub, dict) and (sub.get("text") or sub.get("name")):
                    parts.append(str(sub.get("text") or sub.get("name")))
        return "\n".join(p for p in parts if p)

    def iter_components(self) -> list[dict[str, Any]]:
        """All interactive components, flattened out of action rows / containers."""
        found: list[dict[str, Any]] = []

        def walk(items: list[dict[str, Any]]) -> None:
            for item in items:
                if item.get("type") in (1, 9, 17) or "components" in item:
                    walk(item.get("components", []))
                    if isinstance(item.get("accessory"), dict):
                        walk([item["accessory"]])
                else:
                    found.append(item)

        walk(self.components)
        return found

    def component(self, custom_id: str) -> dict[str, Any] | None:
        for comp in self.iter_components():
            if comp.get("custom_id") == custom_id:
                return comp
        return None

    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in self.iter_components() if "custom_id" in c]

    def would_mention(self) -> dict[str, Any]:
        """What Discord would ping for this message given its content and allowed_mentions.

        Returns ``{"everyone": bool, "users": [ids], "roles": [ids]}``. Without allowed_mentions
        Discord parses everything in the content.
        """
        am = self.allowed_mentions
        parse = {"everyone", "users", "roles"} if am is None else set(am.get("parse", []) or [])
        allowed_users = {int(u) for u in (am or {}).get("users", []) or []}
        allowed_roles = {int(r) for r in (am or {}).get("roles", []) or []}
        everyone = "everyone" in parse and ("@everyone" in self.content or "@here" in self.content)
        users = [
            int(u)
            for u in _USER_MENTION.findall(self.content)
            if "users" in parse or int(u) in allowed_users
        ]
        roles = [
            int(r)
            for r in _ROLE_MENTION.findall(self.content)
            if "roles" in parse or int(r) in allowed_roles
        ]
        return {"everyone": everyone, "users": users, "roles": roles}

    def pings_anyone(self) -> bool:
        m = self.would_mention()
        return bool(m["everyone"] or m["users"] or m["roles"])

    def file(self, filename: str | None = None) -> FakeAttachment:
        for att in self.attachments:
            if filename is None or att.filename == filename:
                return att
        raise KeyError(f"message {self.id} has no attachment {filename!r}")

    def payload(self) -> dict[str, Any]:
        if self.kind == "user":
            msg_type = self.message_type
        elif self.kind == "original" and self.interaction_id is not None:
            msg_type = 20
        else:
            msg_type = 19 if self.message_reference else 0
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": msg_type,
            "channel_id": str(self.channel_id),
            "author": self.author.payload(),
            "content": self.content,
            "timestamp": self.created_at,
            "edited_timestamp": self.edited_at,
            "tts": self.tts,
            "mention_everyone": self.would_mention()["everyone"],
            "mentions": [],
            "mention_roles": [str(r) for r in self.would_mention()["roles"]],
            "attachments": [a.payload() for a in self.attachments],
            "embeds": self.embeds,
            "pinned": False,
            "flags": self.flags,
            "components": self.components,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
            data["webhook_id"] = str(self.application_id)
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.interaction_metadata is not None:
            data["interaction_metadata"] = self.interaction_metadata
        if self.message_reference is not None:
            data["message_reference"] = self.message_reference
        return data


@dataclass
class RecordedRequest:
    """One HTTP request the fake received (REST, CDN or the gateway upgrade)."""

    method: str
    path: str
    route: str | None  # "METHOD /template" of the matched route; None when unknown
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    files: list[UploadedFile] = field(default_factory=list)
    status: int = 0
    at: float = field(default_factory=time.monotonic)
    response: Any = None

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


@dataclass
class RegisteredCommand:
    id: int
    guild_id: int | None
    data: dict[str, Any]
    version: int

    @property
    def name(self) -> str:
        return str(self.data["name"])

    def payload(self, application_id: int) -> dict[str, Any]:
        data = dict(self.data)
        data.setdefault("type", 1)
        data.setdefault("description", "")
        data.setdefault("options", [])
        data.setdefault("default_member_permissions", None)
        data.setdefault("nsfw", False)
        data.setdefault("name_localizations", None)
        data.setdefault("description_localizations", None)
        if self.guild_id is None:
            data.setdefault("contexts", None)
            data.setdefault("integration_types", [0])
            data.setdefault("dm_permission", True)
        else:
            data["guild_id"] = str(self.guild_id)
        data["id"] = str(self.id)
        data["application_id"] = str(application_id)
        data["version"] = str(self.version)
        return data
