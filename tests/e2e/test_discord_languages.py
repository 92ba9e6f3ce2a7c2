"""End to end: the bot in the member's and the server's language (es-ES), against the fake
Discord. The commands are synced with their localizations; a private answer follows the
member's client language, a public message the server's; a story's text is never translated.
"""

# ruff: noqa: ASYNC109  # the harness API takes explicit timeouts so failures say what was awaited

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.fake_discord import FakeDiscord, FakeMessage, make_bot_process
from tests.fake_discord.fixtures import BotEnv, module_bot_env
from tests.fake_discord.handles import InteractionHandle

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
ARTICLE = REPO / "data" / "belling-the-cat.txt"
OPENING = (
    "Had a general council to consider what measures they could take to outwit their common "
    "enemy, the cat."
)
TRAIN_TIMEOUT = 120.0
BOT_CONFIG = {"cooldowns": {"continue_seconds": 0.0}, "workers": {"count": 1}}


async def _spanish_server(fake: FakeDiscord, tmp_path: Path) -> None:
    assert fake.world is not None
    fake.world.guild.preferred_locale = "es-ES"
    for user in (fake.world.admin, fake.world.member):
        user.locale = "es-ES"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    async with module_bot_env(
        tmp_path_factory,
        "discord-languages",
        BOT_CONFIG,
        command_names=("train", "continue"),
        prepare=_spanish_server,
    ) as started:
        yield started


@pytest.fixture(autouse=True)
def _clean_api_use(env: BotEnv) -> Iterator[None]:
    yield
    env.fake.assert_no_unknown_requests()
    env.fake.assert_no_violations()
    env.world.member.locale = "es-ES"


def _option(command: dict[str, Any], name: str) -> dict[str, Any]:
    return next(o for o in command["options"] if o["name"] == name)


def _assert_localized(commands: dict[str, Any]) -> None:
    train = commands["train"].data
    assert train["name_localizations"]["es-ES"] == "entrenar"
    assert train["name_localizations"]["fr"] == "entraîner"
    assert train["name_localizations"]["ja"] == "学習"
    assert train["description_localizations"]["es-ES"].startswith("Enseña una historia")
    story = _option(train, "story")
    assert story["name_localizations"]["de"] == "geschichte"
    assert story["description_localizations"]["pt-BR"].startswith("Uma história")
    source = _option(train, "source")
    file_choice = next(c for c in source["choices"] if c["value"] == "file")
    assert file_choice["name_localizations"]["es-ES"] == "archivo"
    group = commands["story"].data
    show = _option(group, "show")
    assert show["name_localizations"]["es-ES"] == "ver"
    menu = commands["Continue this"].data
    assert menu["name_localizations"]["es-ES"] == "Continuar esto"


async def test_the_dev_guild_sync_sends_the_localizations(env: BotEnv) -> None:
    commands = await env.fake.wait_for_commands(env.world.guild)
    _assert_localized({name: commands[name] for name in commands})


async def test_the_global_sync_sends_the_localizations(env: BotEnv, tmp_path: Path) -> None:
    proc = make_bot_process(env.fake, tmp_path, {}, args=("sync",), name="sync")
    await proc.start(wait_identify=False, wait_commands_for=False)
    assert await proc.wait_exit(60.0) == 0, proc.log_tail()
    _assert_localized(env.fake.commands[None])


async def _private(handle: InteractionHandle, timeout: float = 30.0) -> FakeMessage:
    reply = await handle.wait_reply(timeout)
    assert reply.ephemeral, reply.content
    return reply


async def test_an_error_speaks_the_member_s_language(env: BotEnv) -> None:
    handle = await env.fake.send_slash_command(
        "continue", {"prompt": "had a general"}, user=env.world.member, channel=env.world.channel
    )
    reply = await _private(handle)
    assert "Todavía no se ha entrenado ninguna historia" in reply.content, reply.content
    env.world.member.locale = "fr"
    handle = await env.fake.send_slash_command(
        "continue", {"prompt": "had a general"}, user=env.world.member, channel=env.world.channel
    )
    reply = await _private(handle)
    assert "Aucune histoire n'a encore été entraînée" in reply.content, reply.content
    env.world.member.locale = "ko"  # no catalogue: English
    handle = await env.fake.send_slash_command(
        "continue", {"prompt": "had a general"}, user=env.world.member, channel=env.world.channel
    )
    reply = await _private(handle)
    assert "No story has been trained in this channel yet" in reply.content, reply.content


async def test_a_core_error_speaks_spanish_with_its_figures(env: BotEnv) -> None:
    """The core's checks (the prompt's length, an option's range) answer in the member's
    language, with the figures and the option's localized name filled in."""
    prompt = " ".join(["had a general council"] * 10)  # 40 words; the limit is 32
    handle = await env.fake.send_slash_command(
        "continue", {"prompt": prompt}, user=env.world.member, channel=env.world.channel
    )
    reply = await _private(handle)
    assert reply.content == (
        "El texto tiene 40 palabras y signos de puntuación; el límite es 32."
    ), reply.content
    handle = await env.fake.send_slash_command(
        "continue",
        {"prompt": "had a general", "length": 0},
        user=env.world.member,
        channel=env.world.channel,
    )
    reply = await _private(handle)
    assert reply.content.startswith("longitud debe ser un número entero de 1 a "), reply.content


def _export_without_manifest() -> bytes:
    """Starts like a fabulist export (its mimetype entry first), but has no manifest."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("mimetype", b"application/vnd.fabulist.export+zip")
        archive.writestr("vocabulary.json", b"[]")
        archive.writestr("model.bin", b"FABULIST")
    return data.getvalue()


async def test_a_broken_export_file_is_refused_in_spanish(env: BotEnv) -> None:
    channel = env.fake.add_channel(env.world.guild, "imports")
    attachment = env.fake.add_attachment(
        "story.fabulist.zip", _export_without_manifest(), channel=channel
    )
    handle = await env.fake.send_slash_command(
        "train", {"story": attachment}, user=env.world.admin, channel=channel
    )
    reply = await _private(handle)
    assert reply.content == (
        "Esto no es una exportación válida de fabulist: las entradas no son las esperadas. "
        "No se ha importado nada."
    ), reply.content


async def test_train_answers_and_shows_progress_in_spanish(env: BotEnv) -> None:
    channel = env.world.channel
    attachment = env.fake.add_attachment(
        "belling-the-cat.txt", ARTICLE.read_bytes(), channel=channel
    )
    handle = await env.fake.send_slash_command(
        "train", {"story": attachment, "seed": 1}, user=env.world.admin, channel=channel
    )
    reply = await _private(handle)
    assert "El trabajo de entrenamiento n.º" in reply.content, reply.content
    assert "Progreso:" in reply.content, reply.content
    progress = await env.fake.wait_for_message(
        lambda m: (
            m.kind == "channel" and any(c.startswith("fabulist:cancel:") for c in m.custom_ids())
        ),
        channel=channel,
        timeout=15.0,
    )
    assert {c.get("label") for c in progress.iter_components()} >= {"Cancelar"}
    done = await env.fake.wait_until(
        lambda: progress if progress.content.startswith("**Terminado**") else None,
        TRAIN_TIMEOUT,
        "the finished training message, in Spanish",
    )
    assert "belling-the-cat.txt" in done.content
    assert "símbolos" in done.content and "precisión aprendible" in done.content, done.content
    assert "Prueba `/continuar`" in done.content, done.content


async def test_continue_answers_in_spanish_and_keeps_the_story(env: BotEnv) -> None:
    handle = await env.fake.send_slash_command(
        "continue",
        {"prompt": "had a general", "temperature": 0.0},
        user=env.world.member,
        channel=env.world.channel,
    )
    reply = await handle.wait_reply(15.0)
    assert not reply.ephemeral
    assert reply.content.startswith(OPENING), reply.content  # the story, word for word
    footer = reply.content.rsplit("\n", 1)[-1]
    assert footer.startswith("-# modelo v1"), footer
    assert "de la historia" in footer, footer
    assert {"Otra vez", "Continuar"} <= {c.get("label") for c in reply.iter_components()}


async def test_a_public_reply_speaks_the_server_s_language(env: BotEnv) -> None:
    env.world.member.locale = "de"
    handle = await env.fake.send_slash_command(
        "continue",
        {"prompt": "had a general", "temperature": 0.0},
        user=env.world.member,
        channel=env.world.channel,
    )
    reply = await handle.wait_reply(15.0)
    assert reply.content.startswith(OPENING), reply.content
    assert "-# modelo v1" in reply.content, reply.content
    assert "Modell" not in reply.content
