"""Replies that quote what members sent (prompt words, upload names) render none of its markdown."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from bot.export import MANIFEST_NAME, MIMETYPE, MIMETYPE_NAME, MODEL_NAME, VOCABULARY_NAME
from tests.fake_discord import FakeDiscord
from tests.fake_discord.fixtures import StartBot

pytestmark = pytest.mark.e2e

ARTICLE = Path(__file__).resolve().parents[2] / "data" / "belling-the-cat.txt"
TINY = {
    "workers": {"count": 1},
    "cooldowns": {"continue_seconds": 0.0},
    "training": {"units": 16, "embedding_dim": 16, "max_epochs": 30, "max_seconds": 60.0},
}
# A markdown character without the backslash before it that makes Discord show it literally.
UNESCAPED_MARKDOWN = re.compile(r"(?<!\\)[*_`|~]")


def _export_with_entry(name: str) -> bytes:
    """An export-looking zip with an unexpected entry ``name``: refused, naming the entry."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo(MIMETYPE_NAME), MIMETYPE)
        for entry in (MANIFEST_NAME, VOCABULARY_NAME, MODEL_NAME, name):
            archive.writestr(entry, b"{}")
    return buffer.getvalue()


async def test_replies_naming_the_members_words_do_not_render_their_markdown(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    world = fake_discord.world
    assert world is not None
    bot = await start_bot(TINY)

    upload = fake_discord.add_attachment(
        "export.zip", _export_with_entry("**bold** ||hidden|| `code`"), channel=world.channel
    )
    handle = await fake_discord.send_slash_command(
        "train", {"story": upload}, user=world.admin, channel=world.channel
    )
    reply = await handle.wait_reply(30.0)
    assert reply.ephemeral and not reply.pings_anyone()
    assert "unexpected entry" in reply.content and "hidden" in reply.content, reply.content
    assert not UNESCAPED_MARKDOWN.search(reply.content), reply.content

    story = fake_discord.add_attachment("cat.txt", ARTICLE.read_bytes(), channel=world.channel)
    handle = await fake_discord.send_slash_command(
        # n_input 10: the model reads the prompt's last 10 known symbols, so every unknown
        # symbol below is inside the part of the prompt whose unknown words the reply names.
        "train",
        {"story": story, "seed": 1, "n_input": 10},
        user=world.admin,
        channel=world.channel,
    )
    await handle.wait_reply(30.0)
    await fake_discord.wait_for_message(
        lambda m: m.kind == "channel" and m.content.startswith("**Finished**"),
        channel=world.channel,
        timeout=120.0,
    )
    handle = await fake_discord.send_slash_command(
        "continue",
        {"prompt": "had a **bold** ||secret|| `code`"},
        user=world.member,
        channel=world.channel,
    )
    reply = await handle.wait_reply(15.0)
    # Not refused (issue 23): a continuation, with a line naming the words the story never
    # uses, markdown characters included, escaped like the rest.
    assert not reply.ephemeral and not reply.pings_anyone()
    note = reply.content.split("\n")[-2]
    assert note.startswith("-# I didn't know") and "secret" in note, reply.content
    assert "`" in note and "|" in note and "*" in note, note
    assert not UNESCAPED_MARKDOWN.search(reply.content), reply.content
    bot.assert_log_clean()
