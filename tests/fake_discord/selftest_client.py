"""A minimal real discord.py bot used to prove the fake Discord right (independent of our bot).

Usage: python -m tests.fake_discord.selftest_client TOKEN API_BASE GATEWAY GUILD_ID [--shards N]
       [--shard-count N]  (--shards: Discord's recommended count; --shard-count: exactly N)

It defines ``/probe mode:<str> [file:<attachment>] [word:<str, autocomplete>]`` (guild command)
and a global ``/ping``; modes exercise every interaction response path.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import struct
import zlib

import discord
import discord.gateway
import discord.http
from discord import app_commands

log = logging.getLogger("selftest_client")

WORDS = ["mouse", "mice", "cat", "council", "general", "bell", "neck"]


def tiny_png() -> bytes:
    """A valid 2x1 PNG, built by hand so the client needs no imaging library."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0)
    raw = b"\x00" + b"\xff\x00\x00" + b"\x00\x00\xff"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


class ProbeView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=600)

    @discord.ui.button(label="Edit me", custom_id="probe:edit", style=discord.ButtonStyle.primary)
    async def edit_me(
        self, interaction: discord.Interaction, button: discord.ui.Button[ProbeView]
    ) -> None:
        await interaction.response.edit_message(
            content=f"clicked by {interaction.user.name}", view=None
        )

    @discord.ui.button(label="Later", custom_id="probe:later", style=discord.ButtonStyle.secondary)
    async def later(
        self, interaction: discord.Interaction, button: discord.ui.Button[ProbeView]
    ) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="edited after deferred update")
        await interaction.followup.send("ephemeral followup", ephemeral=True)


def build_client(
    guild_id: int, shards: int | None, shard_count: int | None = None
) -> discord.Client:
    intents = discord.Intents.default()
    allowed = discord.AllowedMentions.none()
    client: discord.Client
    if shard_count:
        client = discord.AutoShardedClient(
            intents=intents, allowed_mentions=allowed, shard_count=shard_count
        )
    elif shards:
        client = discord.AutoShardedClient(intents=intents, allowed_mentions=allowed)
    else:
        client = discord.Client(intents=intents, allowed_mentions=allowed)
    tree = app_commands.CommandTree(client)
    guild = discord.Object(guild_id)

    @tree.command(name="probe", description="exercise the fake Discord", guild=guild)
    @app_commands.describe(mode="what to do", file="a file", word="a word")
    async def probe(
        interaction: discord.Interaction,
        mode: str,
        file: discord.Attachment | None = None,
        word: str | None = None,
    ) -> None:
        if mode == "reply":
            data = await file.read() if file else b""
            digest = hashlib.sha256(data).hexdigest()[:12]
            await interaction.response.send_message(
                f"got {file.filename if file else None} {len(data)} bytes sha {digest} "
                f"word={word} @everyone <@{interaction.user.id}>",
                view=ProbeView(),
            )
        elif mode == "defer":
            await interaction.response.defer(thinking=True)
            size = file.size if file else 0
            await interaction.edit_original_response(content=f"working on {size} bytes")
            await interaction.followup.send(
                "here is a plot",
                file=discord.File(__import__("io").BytesIO(tiny_png()), filename="plot.png"),
                view=ProbeView(),
                embed=discord.Embed(title="Summary", description="done").add_field(
                    name="symbols", value="42"
                ),
            )
            assert interaction.channel is not None
            channel = interaction.channel
            assert isinstance(channel, discord.TextChannel)
            progress = await channel.send("progress 0%")
            await progress.edit(content="progress 100%")
        elif mode == "followup-first":
            await interaction.response.defer(ephemeral=True, thinking=True)
            await interaction.followup.send("first followup replaces thinking")
        elif mode == "perms":
            perms = interaction.permissions
            allowed = perms.manage_channels
            await interaction.response.send_message(
                f"manage_channels={allowed} app_send={interaction.app_permissions.send_messages} "
                f"guild={interaction.guild_id}",
                ephemeral=not allowed,
            )
        elif mode == "channel":
            assert isinstance(interaction.channel, discord.TextChannel)
            await interaction.response.send_message("sending to channel", ephemeral=True)
            await interaction.channel.send(f"channel message {word}")
        elif mode == "slow":
            await asyncio.sleep(0.1)
            await interaction.response.send_message("slow but in time")
        else:
            await interaction.response.send_message(f"unknown mode {mode}", ephemeral=True)

    @probe.autocomplete("word")
    async def word_autocomplete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=w, value=w) for w in WORDS if w.startswith(current)][:25]

    @tree.command(name="ping", description="global command")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong", ephemeral=True)

    async def setup_hook() -> None:
        await tree.sync(guild=guild)
        await tree.sync()

    client.setup_hook = setup_hook  # type: ignore[method-assign]

    @client.event
    async def on_ready() -> None:
        log.info("READY as %s in %d guilds", client.user, len(client.guilds))

    @client.event
    async def on_resumed() -> None:
        log.info("RESUMED")

    return client


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("token")
    parser.add_argument("api_base")
    parser.add_argument("gateway")
    parser.add_argument("guild_id", type=int)
    parser.add_argument("--shards", type=int, default=None)
    parser.add_argument("--shard-count", type=int, default=None)
    args = parser.parse_args()
    discord.http.Route.BASE = args.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = discord.gateway.yarl.URL(args.gateway)
    discord.utils.setup_logging(level=logging.INFO, root=True)
    client = build_client(args.guild_id, args.shards, args.shard_count)
    client.run(args.token, log_handler=None)


if __name__ == "__main__":
    main()
