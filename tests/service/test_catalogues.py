"""The Discord adapter's catalogues: every language complete, its placeholders those of the
English message, its command names valid for Discord, and the catalogues up to date with the
code (``python -m bot.discord_adapter.catalogues`` rewrites them)."""

from __future__ import annotations

import asyncio
import io
import string
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import discord
import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po

from bot.adapters.language import ENGLISH
from bot.adapters.text import stats_lines, vocabulary_text
from bot.adapters.training_words import format_duration
from bot.config import load_config
from bot.core.figures import StoryStats
from bot.core.uploads import check_upload_size, prepare_story
from bot.core.validation import check_float, check_int
from bot.discord_adapter.catalogues import (
    built_messages,
    keywords,
    template,
    unextracted_messages,
)
from bot.discord_adapter.client import FabulistBot
from bot.discord_adapter.i18n import (
    CATALOGUE_OF,
    DOMAIN,
    LOCALES_DIR,
    MENU_CONTEXT,
    NAME_CONTEXT,
    Catalogue,
)
from bot.discord_adapter.rendering import continuation_text, format_percent
from bot.discord_adapter.replies import user_error_message
from bot.display import byte_size, format_bytes
from bot.errors import InvalidOption, InvalidUpload, UserError
from bot.export import ExportLimits, InvalidExport, read_export
from bot.messages import Number, Phrase
from tests.fake_discord.validation import command_errors, valid_command_name

LANGUAGES = ("es", "fr", "de", "pt_BR", "ja")


def _read(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle)


def _po(language: str) -> Catalog:
    return _read(LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po")


def _messages(catalog: Catalog) -> Iterator[Message]:
    return (message for message in catalog if message.id)


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _key(message: Message) -> tuple[Any, str | None]:
    return (message.id, message.context)


def test_the_five_languages_are_there() -> None:
    assert set(LANGUAGES) <= set(Catalogue.load().names)
    assert {CATALOGUE_OF[locale] for locale in ("es-ES", "fr", "de", "pt-BR", "ja")} == set(
        LANGUAGES
    )


def test_the_template_is_the_code_s_messages() -> None:
    """A message added to the code without running the extraction fails here."""
    pot = _read(LOCALES_DIR / f"{DOMAIN}.pot")
    assert {_key(m) for m in _messages(template())} == {_key(m) for m in _messages(pot)}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_is_translated(language: str) -> None:
    pot = _read(LOCALES_DIR / f"{DOMAIN}.pot")
    catalog = _po(language)
    translated = {_key(m): m for m in _messages(catalog)}
    missing = [m.id for m in _messages(pot) if _key(m) not in translated]
    assert not missing, f"{language}: not in the catalogue: {missing}"
    for message in translated.values():
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(forms), f"{language}: untranslated {message.id!r}"
        assert message.fuzzy is False, f"{language}: fuzzy {message.id!r}"
        if isinstance(message.id, tuple):
            assert len(forms) == catalog.num_plurals, f"{language}: plural forms {message.id!r}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_placeholders_match_the_english(language: str) -> None:
    for message in _messages(_po(language)):
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        # Every plural form may use the count; all of them name what the plural English names.
        expected = _fields(ids[-1])
        for form in forms:
            assert _fields(form) == expected, f"{language}: {message.id!r} -> {form!r}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_command_names_are_valid_for_discord(language: str) -> None:
    for message in _messages(_po(language)):
        if message.context == NAME_CONTEXT:
            assert valid_command_name(message.string), f"{language}: {message.string!r}"
        elif message.context == MENU_CONTEXT:
            assert 1 <= len(message.string) <= 32, f"{language}: {message.string!r}"
        elif ("discord-command-tree", None) in message.locations:
            assert 1 <= len(message.string) <= 100, f"{language}: too long {message.string!r}"


async def _payloads() -> list[dict[str, Any]]:
    bot = FabulistBot(load_config(environ={}), None, sync_dev_guild=False)
    await bot.load_catalogue()
    await bot.setup_hook()
    translator = bot.tree.translator
    assert translator is not None
    commands = bot.tree.get_commands(type=None)
    payloads = [await command.get_translated_payload(bot.tree, translator) for command in commands]
    await bot.close()
    return payloads


def _options(payload: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    options = payload.get("options") or []
    yield options
    for option in options:
        if option.get("type") in (1, 2):
            yield from _options(option)


def test_the_translated_commands_are_what_discord_accepts() -> None:
    payloads = asyncio.run(_payloads())
    assert {p["name"] for p in payloads} >= {"train", "continue", "story", "Continue this"}
    for payload in payloads:
        assert not command_errors(payload)
        for options in _options(payload):
            for locale in ("es-ES", "fr", "de", "pt-BR", "ja"):
                names = [o.get("name_localizations", {}).get(locale, o["name"]) for o in options]
                assert len(names) == len(set(names)), f"{payload['name']} {locale}: {names}"
    train = next(p for p in payloads if p["name"] == "train")
    assert train["name_localizations"]["es-ES"] == "entrenar"
    assert train["name_localizations"]["ja"] == "学習"


def test_a_language_falls_back_to_english() -> None:
    catalogue = Catalogue.load()
    spanish = catalogue.language(discord.Locale.spain_spanish)
    assert spanish.gettext("Cancel") == "Cancelar"
    assert spanish.gettext("a message no catalogue has") == "a message no catalogue has"
    assert catalogue.language("ko") is ENGLISH
    assert catalogue.language(None) is ENGLISH
    assert spanish.ngettext("{count} story", "{count} stories", 2, count=2) == "2 historias"
    assert catalogue.language("ja").ngettext("{count} story", "{count} stories", 2, count=2) == (
        "物語 2 件"
    )


def test_no_message_is_built_at_run_time() -> None:
    """A message built with an f-string (``InvalidUpload(f"The file is {size}.")``) is not in
    the catalogue: it would show in English in every language."""
    assert unextracted_messages() == []


def test_the_check_finds_a_built_message() -> None:
    source = (
        "raise InvalidUpload(f'The file is {size}.')\n"
        "raise NotFound('There is no job #' + str(job))\n"
        "lang.ngettext('{n} story', f'{n} stories', n)\n"
        "raise InvalidUpload('The file is {size}.', size=f'{size:,}')\n"
        "lang.gettext(MESSAGE, count=f'{count:,}')\n"
        "raise UserError(error.template, **error.params)\n"
        "raise _bad(f'{name} is truncated.')\n"
        "raise _bad('{name} is truncated.', name=name)\n"
    )
    assert built_messages(source, "x.py", keywords()) == [
        "x.py:1: InvalidUpload(...) builds its message",
        "x.py:2: NotFound(...) builds its message",
        "x.py:3: ngettext(...) builds its message",
        "x.py:7: _bad(...) builds its message",
    ]


def _raised(call: Any, *args: Any, **kwargs: Any) -> UserError:
    with pytest.raises(UserError) as raised:
        call(*args, **kwargs)
    return raised.value


def test_a_core_error_is_said_in_the_member_s_language_with_its_parameters() -> None:
    catalogue = Catalogue.load()
    spanish = catalogue.language("es-ES")
    too_large = _raised(check_upload_size, 5 << 20, 4 << 20)
    assert isinstance(too_large, InvalidUpload)
    assert too_large.message == "The file is 5.0 MiB; the limit is 4.0 MiB. Upload a shorter story."
    assert user_error_message(too_large, spanish) == (
        "El archivo ocupa 5,0 MiB; el límite es 4,0 MiB. Sube una historia más corta."
    )
    assert user_error_message(_raised(check_upload_size, 2048, 1), catalogue.language("fr")) == (
        "Le fichier fait 2 Kio ; la limite est de 1 octet. Envoyez une histoire plus courte."
    )
    # The option's name is the member's client's (the command's localized option name).
    out_of_range = _raised(check_int, "length", 0, 1, 400)
    assert isinstance(out_of_range, InvalidOption)
    assert out_of_range.message == "length must be a whole number from 1 to 400."
    assert user_error_message(out_of_range, spanish) == (
        "longitud debe ser un número entero de 1 a 400."
    )
    hint = Phrase(" (0 always picks the likeliest word)")
    temperature = _raised(check_float, "temperature", 3.0, 0, 2.0, hint)
    assert temperature.message == (
        "temperature must be a number from 0 to 2 (0 always picks the likeliest word)."
    )
    assert user_error_message(temperature, catalogue.language("ja")) == (
        "温度 は 0 から 2 までの数値にしてください（0 なら常に最も可能性の高い単語を選びます）。"
    )


def test_units_are_said_in_the_language_and_stay_english_elsewhere() -> None:
    japanese = Catalogue.load().language("ja")
    assert format_duration(3725) == "1 h 02 min"
    assert format_duration(3725, japanese) == "1 時間 02 分"
    assert format_duration(185, japanese) == "3 分 05 秒"
    assert format_bytes(1) == "1 byte" and format_bytes(4 << 20) == "4.0 MiB"
    assert japanese.gettext("{size}", size=byte_size(512)) == "512 バイト"
    assert ENGLISH.gettext("{size}", size=byte_size(512)) == "512 bytes"


def _export_without(manifest: bytes | None) -> bytes:
    """A file that starts like an export; ``manifest`` None leaves the manifest out."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("mimetype", b"application/vnd.fabulist.export+zip")
        if manifest is not None:
            archive.writestr("manifest.json", manifest)
        archive.writestr("vocabulary.json", b"[]")
        archive.writestr("model.bin", b"FABULIST")
    return data.getvalue()


def test_an_export_file_s_refusal_is_said_in_the_member_s_language() -> None:
    catalogue = Catalogue.load()
    no_manifest = _raised(read_export, _export_without(None), ExportLimits())
    assert isinstance(no_manifest, InvalidExport)
    assert no_manifest.message == (
        "This is not a valid fabulist export: the entries are not the expected ones. "
        "Nothing was imported."
    )
    assert user_error_message(no_manifest, catalogue.language("es-ES")) == (
        "Esto no es una exportación válida de fabulist: las entradas no son las esperadas. "
        "No se ha importado nada."
    )
    # A reason with parts that are phrases themselves: the manifest, each key missing.
    fields = _raised(
        read_export,
        _export_without(b'{"format": "fabulist-export", "version": 1, "extra": 1}'),
        ExportLimits(),
    )
    assert fields.message == (
        "This is not a valid fabulist export: the manifest: missing 'card', missing "
        "'channel_name', missing 'exported_at', missing 'model', missing 'stories', unknown "
        "'extra'. Nothing was imported."
    )
    assert user_error_message(fields, catalogue.language("fr")) == (
        "Ce n'est pas une exportation fabulist valide : le manifeste : 'card' manquant, "
        "'channel\\_name' manquant, 'exported\\_at' manquant, 'model' manquant, 'stories' "
        "manquant, 'extra' inconnu. Rien n'a été importé."
    )
    too_large = _raised(read_export, bytes(2048), ExportLimits(file_bytes=1024))
    assert user_error_message(too_large, catalogue.language("de")) == (
        "Das ist kein gültiger fabulist-Export: Die Datei ist größer als das Limit von 1 KiB. "
        "Nichts wurde importiert."
    )


def test_numbers_are_written_the_language_s_way_and_stay_english_elsewhere() -> None:
    catalogue = Catalogue.load()
    german, french = catalogue.language("de"), catalogue.language("fr")
    japanese = catalogue.language("ja")
    stats = StoryStats((), 12345, (), None, trainings=1234, replies=1234567)
    assert stats_lines(stats)[-2:] == [("Trainings run", "1,234"), ("Replies served", "1,234,567")]
    assert stats_lines(stats, german)[-1][1] == "1.234.567"
    assert stats_lines(stats, french)[-1][1] == "1\u202f234\u202f567"  # narrow no-break spaces
    assert stats_lines(stats, japanese)[-1][1] == "1,234,567"
    assert stats_lines(stats, catalogue.language("pt-BR"))[-2][1] == "1.234"
    assert vocabulary_text(4455, 10000, 0.125) == "4,455 (cap 10,000, covers 12.5% of the text)"
    german_vocabulary = vocabulary_text(4455, 10000, 0.125, german)
    assert german_vocabulary.startswith("4.455 (") and "10.000" in german_vocabulary
    assert "12,5\u00a0%" in german_vocabulary
    assert format_percent(0.125) == "12.5%" and format_percent(0.125, french) == "12,5\u00a0%"
    english_footer = continuation_text("x", model_version=2, original_share=0.37)
    assert english_footer.endswith("37% from the story")
    assert continuation_text("x", model_version=2, original_share=0.37, lang=german).endswith(
        "37 % aus der Geschichte"
    )
    # The core's figures (Number) follow the reader's language too.
    too_long = _raised(
        prepare_story, " ".join(["word", "other"] * 600).encode(), n_input=3, max_symbols=1000
    )
    assert too_long.message == (
        "The story is too long: 1,200 words and punctuation marks; the limit is 1,000."
    )
    assert user_error_message(too_long, german) == (
        "Die Geschichte ist zu lang: 1.200 Wörter und Satzzeichen; das Limit ist 1.000."
    )
    assert ENGLISH.gettext("{count} symbols", count=Number(1234)) == "1,234 symbols"
    assert german.gettext("{seconds} s", seconds=Number(2.5, 1, grouped=False)) == "2,5 s"
