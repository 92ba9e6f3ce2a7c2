"""Bad input through the real service and real SQLite: a friendly refusal, nothing stored changed.

Every case goes through ``StoryService`` exactly as an adapter calls it. Each must raise a
``UserError`` whose message is friendly, and leave the database byte-for-byte as it was (row
counts, active models, story and model hashes, job states). A prompt with words the story
never uses is no bad input: it is answered from its known words, naming the others (issue 23).
The ledger counts every input.
"""

from __future__ import annotations

import codecs
import io
import math
import re
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, load_config
from bot.core.api import ChannelRef, ContinueOptions, Member, TrainOptions
from bot.core.service import StoryService
from bot.errors import UserError
from bot.executors.local import TrainingPool
from bot.store.sqlite import SqliteStoryStore as StoryStore
from tests.reliability.conftest import STORY, Ledger, snapshot
from tests.reliability.helpers import describe, friendly, seed_model

ADMIN = Member(user_id=1, display_name="admin", is_admin=True)
MEMBER = Member(user_id=2, display_name="member", is_admin=False)
TRAINED = ChannelRef(guild_id=100, channel_id=1, name="story")
EMPTY = ChannelRef(guild_id=100, channel_id=2, name="never-trained")
ONE_MIB = 1 << 20


def _config(tmp_path: Path) -> Config:
    return load_config(
        data={
            "storage": {"database": str(tmp_path / "fabulist.sqlite3")},
            "training": {"units": 16, "embedding_dim": 16},
            "limits": {"story_bytes": 2 * ONE_MIB},
            "cooldowns": {"continue_seconds": 0.0},
        },
        environ={},
    )


@pytest.fixture
async def offline(tmp_path: Path) -> AsyncIterator[tuple[StoryService, StoryStore, Path]]:
    """A service whose worker pool never starts: no bad input may ever reach training."""
    config = _config(tmp_path)
    store = await StoryStore.open(config.storage.database)
    await seed_model(store, TRAINED.channel_id, STORY.decode(), name="story")
    service = StoryService(config, store, TrainingPool(1))
    await service.start(warm_workers=False)
    yield service, store, config.storage.database
    await service.close()
    await store.close()


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


BAD_UPLOADS: list[tuple[str, bytes, str]] = [
    ("empty file", b"", "empty"),
    ("PNG image", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "PNG"),
    ("zip archive", _zip({"story.txt": b"the cat sat on the mat " * 50}), "zip"),
    ("zip bomb", _zip({"a.txt": bytes(50 * ONE_MIB)}), "zip"),
    ("pickle in a zip", _zip({"model.pkl": b"\x80\x04\x95cos\nsystem\n."}), "zip"),
    ("ELF executable", b"\x7fELF\x02\x01\x01\x00" + bytes(500), "executable"),
    ("Windows executable", b"MZ\x90\x00\x03\x00\x00\x00" + bytes(500), "Windows program"),
    ("PDF", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(300), "PDF"),
    ("gzip", b"\x1f\x8b\x08\x00" + bytes(300), "gzip"),
    ("pickle payload", b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00\x8c\x02os", "binary"),
    ("SQLite database", b"SQLite format 3\x00" + bytes(300), "SQLite"),
    ("Latin-1 text", "Le café était très bon, dit-il à l'élève. ".encode("latin-1") * 5, "UTF-8"),
    ("Windows-1252 text", "“smart quotes” – café".encode("cp1252") * 5, "UTF-8"),
    ("UTF-16 without BOM", "hello there cat ".encode("utf-16-le") * 20, "control"),
    ("truncated UTF-8", "the cat sat é".encode()[:-1], "UTF-8"),
    ("only whitespace", b"   \n\t \r\n  ", "no text"),
    ("only a BOM", codecs.BOM_UTF8, "no text"),
    ("fewer than n_input+1 symbols", b"the cat", "too short"),
    ("exactly n_input symbols", b"the cat sat", "too short"),
    ("one word repeated", b"mouse " * 500, "single word"),
    ("one symbol repeated with punctuation", b". . . . . . . .", "single word"),
    ("1 MiB line with no spaces", b"x" * ONE_MIB, "too short"),
    ("NUL bytes", b"the cat\x00 sat on the mat and more words here", "NUL"),
    ("bell character", b"the cat \x07 sat on the mat and more words here", "U\\+0007"),
    ("escape sequence", b"the cat \x1b[31m sat on the mat and more words", "U\\+001B"),
    ("DEL character", b"the cat \x7f sat on the mat and more words here", "U\\+007F"),
    ("C1 control", "the cat \u0085 sat on the mat and more".encode(), "U\\+0085"),
    ("over the byte limit", b"the cat sat . " * (3 * ONE_MIB // 14), "limit"),
]


async def _expect_refusal(
    ledger: Ledger,
    db: Path,
    what: str,
    call: Callable[[], Awaitable[Any]],
    match: str | None = None,
) -> str:
    before = snapshot(db)
    error: UserError | None = None
    other: BaseException | None = None
    try:
        await call()
    except UserError as exc:
        error = exc
    except Exception as exc:  # a bug: recorded as a loss, then reported
        other = exc
    after = snapshot(db)
    message = error.message if error is not None else ""
    ok = (
        error is not None
        and friendly(message)
        and before == after
        and (match is None or re.search(match, message) is not None)
    )
    ledger.record("bad input", ok, f"{what}: {other or message!r}, unchanged={before == after}")
    assert other is None, f"{what}: unexpected {other!r}"
    assert error is not None, f"{what} was accepted"
    assert friendly(message), f"{what}: unfriendly message {message!r}"
    assert before == after, f"{what} changed the database"
    if match is not None:
        assert re.search(match, message), f"{what}: {message!r} !~ {match}"
    return message


@pytest.mark.parametrize(("what", "data", "match"), BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS])
async def test_bad_upload(
    offline: tuple[StoryService, StoryStore, Path],
    ledger: Ledger,
    what: str,
    data: bytes,
    match: str,
) -> None:
    service, _, db = offline

    async def call() -> None:
        service.check_upload_size(len(data))
        await service.train(EMPTY, ADMIN, "story.txt", data, TrainOptions())

    await _expect_refusal(ledger, db, what, call, f"(?i){match}")
    # The same bytes into a channel that has a model must not disturb it either.
    await _expect_refusal(
        ledger,
        db,
        f"{what} (trained channel)",
        lambda: service.train(TRAINED, ADMIN, "story.txt", data, TrainOptions()),
    )


BAD_TRAIN_OPTIONS: list[tuple[str, TrainOptions]] = [
    ("layers 0", TrainOptions(layers=0)),
    ("layers 3", TrainOptions(layers=3)),
    ("layers True", TrainOptions(layers=True)),
    ("layers 1.5", TrainOptions(layers=1.5)),  # type: ignore[arg-type]
    ("n_input 0", TrainOptions(n_input=0)),
    ("n_input -3", TrainOptions(n_input=-3)),
    ("n_input 11", TrainOptions(n_input=11)),
    ("n_input huge", TrainOptions(n_input=10**18)),
    ("seed -1", TrainOptions(seed=-1)),
    ("seed 2**31", TrainOptions(seed=2**31)),
    ("seed 2**64", TrainOptions(seed=2**64)),
    ("max_seconds NaN", TrainOptions(max_seconds=math.nan)),
    ("max_seconds inf", TrainOptions(max_seconds=math.inf)),
    ("max_seconds 0", TrainOptions(max_seconds=0)),
    ("max_seconds -5", TrainOptions(max_seconds=-5.0)),
    ("mode bogus", TrainOptions(mode="bogus")),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("what", "options"), BAD_TRAIN_OPTIONS, ids=[c[0] for c in BAD_TRAIN_OPTIONS]
)
async def test_bad_train_options(
    offline: tuple[StoryService, StoryStore, Path], ledger: Ledger, what: str, options: TrainOptions
) -> None:
    service, _, db = offline
    await _expect_refusal(
        ledger, db, what, lambda: service.train(EMPTY, ADMIN, "s.txt", STORY, options)
    )


BAD_CONTINUE: list[tuple[str, str, ContinueOptions, str | None]] = [
    ("empty prompt", "", ContinueOptions(), "at least one word"),
    ("blank prompt", "   \n\t", ContinueOptions(), "at least one word"),
    ("zero-width prompt", "\u200b \u2060\ufeff\u200d", ContinueOptions(), "at least one word"),
    ("over the symbol limit", "the cat " * 40, ContinueOptions(), "limit"),
    ("over the character limit", "a" * 5000, ContinueOptions(), "too long"),
    ("a 1 MiB prompt", "the " * (ONE_MIB // 4), ContinueOptions(), "too long"),
    ("length 0", "the cat", ContinueOptions(length=0), "length"),
    ("length -1", "the cat", ContinueOptions(length=-1), "length"),
    ("length huge", "the cat", ContinueOptions(length=10**12), "length"),
    ("length 2**63", "the cat", ContinueOptions(length=2**63), "length"),
    ("length True", "the cat", ContinueOptions(length=True), "length"),
    ("length 2.5", "the cat", ContinueOptions(length=2.5), "length"),  # type: ignore[arg-type]
    ("temperature -1", "the cat", ContinueOptions(temperature=-1.0), "temperature"),
    ("temperature NaN", "the cat", ContinueOptions(temperature=math.nan), "temperature"),
    ("temperature inf", "the cat", ContinueOptions(temperature=math.inf), "temperature"),
    ("temperature -inf", "the cat", ContinueOptions(temperature=-math.inf), "temperature"),
    ("temperature 1e308", "the cat", ContinueOptions(temperature=1e308), "temperature"),
    ("temperature text", "the cat", ContinueOptions(temperature="0"), "temperature"),  # type: ignore[arg-type]
    ("seed -1", "the cat", ContinueOptions(seed=-1), "seed"),
    ("seed 2**31", "the cat", ContinueOptions(seed=2**31), "seed"),
    ("seed 2**100", "the cat", ContinueOptions(seed=2**100), "seed"),
    ("top_k 0", "the cat", ContinueOptions(top_k=0), "top_k"),
    ("top_k -5", "the cat", ContinueOptions(top_k=-5), "top_k"),
]


@pytest.mark.parametrize(
    ("what", "prompt", "options", "match"), BAD_CONTINUE, ids=[c[0] for c in BAD_CONTINUE]
)
async def test_bad_continue(
    offline: tuple[StoryService, StoryStore, Path],
    ledger: Ledger,
    what: str,
    prompt: str,
    options: ContinueOptions,
    match: str | None,
) -> None:
    service, _, db = offline
    await _expect_refusal(
        ledger,
        db,
        what,
        lambda: service.continue_story(TRAINED, prompt, options, member=MEMBER),
        match,
    )


# Prompts the story does not know (issue 23): answered from their known words (none: from the
# story's start), naming the words that were left out. (A prompt of zero-width characters alone
# shows nothing to name: it is refused as blank, in BAD_CONTINUE.)
UNKNOWN_PROMPTS: list[tuple[str, str, list[str]]] = [
    ("only punctuation", "?!.,;:", ["!", ";", ":"]),
    ("all unknown words", "zebra quokka axolotl", ["zebra", "quokka", "axolotl"]),
    ("mixed known and unknown", "the mice zebra", ["zebra"]),
    ("unknown word with mentions", "@everyone <@123> hi", ["@", "everyone", "<", "123", ">", "hi"]),
    ("prompt with markdown", "**the** ||cat|| `said`", ["*", "|", "`"]),
    ("NUL in prompt", "the \x00 cat", ["\x00"]),
]


@pytest.mark.parametrize(
    ("what", "prompt", "unknown"), UNKNOWN_PROMPTS, ids=[c[0] for c in UNKNOWN_PROMPTS]
)
async def test_unknown_words_are_answered_and_named(
    offline: tuple[StoryService, StoryStore, Path],
    ledger: Ledger,
    what: str,
    prompt: str,
    unknown: list[str],
) -> None:
    service, _, _ = offline
    reply = await service.continue_story(TRAINED, prompt, ContinueOptions(length=8), member=MEMBER)
    named = [u.word for u in reply.unknown_words]
    ok = len(reply.symbols) == 8 and named == unknown
    ledger.record("bad input", ok, f"{what}: answered, naming {named}")
    assert ok, (what, reply)


async def test_requests_on_a_channel_never_trained(
    offline: tuple[StoryService, StoryStore, Path], ledger: Ledger
) -> None:
    service, _, db = offline
    message = await _expect_refusal(
        ledger,
        db,
        "/continue in a channel never trained",
        lambda: service.continue_story(EMPTY, "had a general", ContinueOptions()),
    )
    assert "/train" in message
    for what, call in [
        ("/story rollback with no model", lambda: service.rollback(EMPTY, ADMIN)),
        ("/export with no model", lambda: service.export_channel(EMPTY, ADMIN)),
        ("remove a story that does not exist", lambda: service.remove_story(EMPTY, ADMIN, 99)),
        ("remove story id 0", lambda: service.remove_story(EMPTY, ADMIN, 0)),
        ("rollback to version -1", lambda: service.rollback(TRAINED, ADMIN, -1)),
        ("rollback to a version never made", lambda: service.rollback(TRAINED, ADMIN, 7)),
        ("wait for a job that does not exist", lambda: service.wait_for_job(424242)),
    ]:
        await _expect_refusal(ledger, db, what, call)
    # Read-only requests answer without error and change nothing.
    before = snapshot(db)
    card = await service.story_card(EMPTY)
    words = await service.complete_word(EMPTY, "ha")
    nothing = await service.cancel(EMPTY, MEMBER)
    ok = not card.has_model and words == [] and nothing is None and snapshot(db) == before
    ledger.record("bad input", ok, "card/autocomplete/cancel on an empty channel", 3)
    assert ok


async def test_members_without_the_right(
    offline: tuple[StoryService, StoryStore, Path], ledger: Ledger
) -> None:
    service, store, db = offline
    cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        (
            "/train by a member",
            lambda: service.train(TRAINED, MEMBER, "s.txt", STORY, TrainOptions()),
        ),
        ("/forget by a member", lambda: service.forget(TRAINED, MEMBER)),
        ("rollback by a member", lambda: service.rollback(TRAINED, MEMBER)),
        ("remove story by another member", lambda: service.remove_story(TRAINED, MEMBER, 1)),
        ("export by a member", lambda: service.export_channel(TRAINED, MEMBER)),
        ("import by a member", lambda: service.import_channel(TRAINED, MEMBER, b"PK\x03\x04")),
    ]
    for what, call in cases:
        message = await _expect_refusal(ledger, db, what, call)
        assert "allowed" in message.lower() or "only" in message.lower(), message
    assert await store.active_model_id(TRAINED.channel_id) is not None


async def test_accepted_encodings_are_stored_as_text(
    offline: tuple[StoryService, StoryStore, Path], ledger: Ledger
) -> None:
    """UTF-16 with BOM (both byte orders) and UTF-8 with BOM are accepted, stored decoded."""
    from bot.core.uploads import prepare_story

    text = "the mice had a general council , “quoth” the cat . ünïcödé 🐭 ."
    for what, data in [
        ("UTF-16 LE with BOM", codecs.BOM_UTF16_LE + text.encode("utf-16-le")),
        ("UTF-16 BE with BOM", codecs.BOM_UTF16_BE + text.encode("utf-16-be")),
        ("UTF-8 with BOM", codecs.BOM_UTF8 + text.encode()),
        ("CRLF line ends", text.replace(" . ", " .\r\n").encode()),
    ]:
        prepared = prepare_story(data, n_input=3, max_symbols=10_000)
        ok = prepared.text.lstrip("\ufeff").replace("\r\n", " ").replace(" .\n", " . ") is not None
        ok = ok and "ünïcödé 🐭" in prepared.text and "\ufeff" not in prepared.text
        ledger.record("bad input", ok, f"{what} accepted: {describe(prepared.text)}")
        assert ok, (what, prepared.text)


async def test_prompt_edge_cases_that_must_answer(
    offline: tuple[StoryService, StoryStore, Path], ledger: Ledger
) -> None:
    """Temperature 0, the largest length, a prompt at the symbol limit: all valid, all answer."""
    service, _, db = offline
    before = snapshot(db)
    limit = service.config.limits
    cases = [
        ("temperature 0", "had a general", ContinueOptions(temperature=0.0)),
        ("max temperature", "the cat", ContinueOptions(temperature=limit.max_temperature, seed=1)),
        ("largest length", "the cat", ContinueOptions(length=limit.continuation_symbols)),
        ("prompt at the symbol limit", "the cat " * (limit.prompt_symbols // 2), ContinueOptions()),
        ("upper-case prompt", "HAD A GENERAL", ContinueOptions()),
        ("seed 0", "the cat", ContinueOptions(seed=0, temperature=1.0)),
        ("seed at the limit", "the cat", ContinueOptions(seed=2**31 - 1, temperature=1.0)),
    ]
    for what, prompt, options in cases:
        reply = await service.continue_story(TRAINED, prompt, options, member=MEMBER)
        ok = bool(reply.symbols) and reply.model_version == 1
        ledger.record("bad input", ok, what)
        assert ok, what
    assert snapshot(db) == before


def test_file_names_never_become_paths(ledger: Ledger) -> None:
    from bot.core.uploads import clean_filename

    names = [
        "../../etc/passwd",
        "..\\..\\windows\\system32\\config",
        "/absolute/path/story.txt",
        "story\x00.txt",
        "\u202eevil.txt",
        "",
        "   ",
        "a" * 500,
        "CON",
        "@everyone.txt",
    ]
    for name in names:
        cleaned = clean_filename(name)
        ok = (
            "/" not in cleaned
            and "\\" not in cleaned
            and cleaned not in ("", ".", "..")
            and len(cleaned) <= 100
            and all(ch.isprintable() for ch in cleaned)
        )
        ledger.record("security", ok, f"file name {name!r} -> {cleaned!r}")
        assert ok, (name, cleaned)
