"""The story library through the service: append, remove, rollback, export and import.

Real SQLite files, a real spawned training worker and tiny models (see conftest).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import threading
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.text import import_text, removal_text, retrain_reason_text
from bot.config import Config
from bot.core.api import ContinueOptions, TrainOptions
from bot.core.service import StoryService
from bot.discord_adapter.i18n import Catalogue
from bot.discord_adapter.replies import user_error_message
from bot.errors import Busy, InvalidOption, InvalidUpload, NotAllowed, NotFound
from bot.executors.local import TrainingPool
from bot.export import ExportLimits, InvalidExport, looks_like_export, read_export
from bot.store.sqlite import SqliteStoryStore as StoryStore
from tests.service.conftest import ADMIN, MEMBER, STORY, channel, tiny_config

pytestmark = pytest.mark.slow

# Words the article never uses, so their n-grams can only come from this story.
CHAPTER = (
    b"later the zebra quietly painted purple umbrellas while the walrus sang about copper "
    b"lanterns . the zebra quietly painted purple umbrellas again and the walrus sang louder ."
)
DOG = b"the dog barked at the moon and the moon said nothing to the dog ."


async def _train(service: StoryService, chan: int, data: bytes, **options: Any) -> int:
    job = await service.train(channel(chan), ADMIN, "story.txt", data, TrainOptions(**options))
    result = await service.wait_for_job(job.job_id)
    assert result.state == "done", result.error
    assert result.model_version is not None
    return result.model_version


def _database_bytes(path: Path) -> bytes:
    parts = [path, path.with_name(path.name + "-wal")]
    return b"".join(p.read_bytes() for p in parts if p.exists())


async def test_append_then_remove_forgets_the_story(
    service: StoryService, store: StoryStore, config: Config
) -> None:
    assert await _train(service, 1, STORY, seed=1) == 1
    job = await service.train(
        channel(1), ADMIN, "chapter.txt", CHAPTER, TrainOptions(seed=1, mode="append")
    )
    assert len(job.story_ids) == 2  # the article, then the chapter, in upload order
    assert (await service.wait_for_job(job.job_id)).model_version == 2
    reply = await service.continue_story(
        channel(1), "zebra quietly", ContinueOptions(length=2, temperature=0.0)
    )
    assert reply.symbols == ["painted", "purple"] and reply.original_share == 1.0
    reply = await service.continue_story(
        channel(1), "had a general", ContinueOptions(length=3, temperature=0.0)
    )
    assert reply.symbols == ["council", "to", "consider"]
    stories = await service.figures.stories(channel(1))
    assert [s.filename for s in stories] == ["story.txt", "chapter.txt"]
    chapter_id = stories[1].story_id

    with pytest.raises(NotAllowed, match="uploaded"):
        await service.remove_story(channel(1), MEMBER, chapter_id)
    with pytest.raises(NotFound):
        await service.remove_story(channel(1), ADMIN, 999)
    with pytest.raises(NotFound):  # another channel's story
        await service.remove_story(channel(2), ADMIN, chapter_id)

    removal = await service.remove_story(channel(1), ADMIN, chapter_id)
    assert removal.deleted_versions == (2,)
    assert removal.active_version == 1  # the article-only version answers meanwhile
    assert removal.retraining is not None and removal.retraining.story_ids == (stories[0].story_id,)
    assert "Removed story" in removal_text(removal) and "Retraining" in removal_text(removal)
    card = await service.story_card(channel(1))
    assert card.notice is not None and "removed" in retrain_reason_text(card.notice)
    assert card.job is not None and card.job.reason == card.notice
    with pytest.raises(Busy):  # one training per channel: the retraining holds it
        await service.remove_story(channel(1), ADMIN, stories[0].story_id)
    result = await service.wait_for_job(removal.retraining.job_id)
    assert result.state == "done" and result.model_version == 3

    # The removed chapter can no longer be generated: its words are unknown to every model...
    unknown = await service.continue_story(
        channel(1), "zebra quietly", ContinueOptions(length=2, temperature=0.0)
    )
    assert [u.word for u in unknown.unknown_words] == ["zebra", "quietly"]
    reply = await service.continue_story(
        channel(1), "had a general", ContinueOptions(length=60, temperature=0.0)
    )
    assert reply.model_version == 3 and reply.original_share == 1.0
    assert not {"zebra", "purple", "walrus", "umbrellas"} & set(reply.symbols)
    assert [v.version for v in await service.figures.versions(channel(1))] == [3, 1]
    assert [s.story_id for s in await service.figures.stories(channel(1))] == [stories[0].story_id]
    # ...and it is gone from the database, down to the bytes of its files.
    assert await store.integrity_check() == "ok"
    await store.checkpoint()
    raw = _database_bytes(config.storage.database)
    assert b"purple umbrellas" not in raw and b"walrus" not in raw
    assert b"general council" in raw


async def test_remove_the_only_story_leaves_no_model(service: StoryService) -> None:
    await _train(service, 3, DOG, seed=2)
    [story] = await service.figures.stories(channel(3))
    removal = await service.remove_story(channel(3), ADMIN, story.story_id)
    assert removal.retraining is None and removal.active_version is None
    assert (await service.story_card(channel(3))).has_model is False


async def test_rollback_while_a_continuation_is_served(tmp_path: Path, pool: TrainingPool) -> None:
    config = tiny_config(tmp_path, workers={"generation_threads": 1})
    store = await StoryStore.open(config.storage.database)
    service = StoryService(config, store, executor=pool)
    await service.start(warm_workers=False)
    try:
        await _train(service, 1, STORY, seed=1)
        await _train(service, 1, DOG, seed=2)
        warm = await service.continue_story(
            channel(1), "dog barked at", ContinueOptions(length=2, temperature=0.0)
        )
        assert warm.model_version == 2
        # Hold the only generation thread so the next continuation is mid-flight for certain.
        release = threading.Event()
        held = asyncio.get_running_loop().run_in_executor(service._threads, release.wait, 30)
        serving = asyncio.ensure_future(
            service.continue_story(
                channel(1), "dog barked at", ContinueOptions(length=2, temperature=0.0)
            )
        )
        await asyncio.sleep(0.05)
        assert not serving.done()
        rolled = await service.rollback(channel(1), ADMIN)
        assert rolled.version == 1 and rolled.active
        release.set()
        await held
        reply = await serving
        # The continuation finished on the model it started with, consistently.
        assert reply.model_version == 2 and reply.symbols == ["the", "moon"]
        after = await service.continue_story(
            channel(1), "had a general", ContinueOptions(length=1, temperature=0.0)
        )
        assert after.model_version == 1 and after.symbols == ["council"]
        with pytest.raises(InvalidOption):
            await service.rollback(channel(1), ADMIN, 0)
        with pytest.raises(NotFound, match="kept versions"):
            await service.rollback(channel(1), ADMIN, 7)
        assert [(v.version, v.active) for v in await service.figures.versions(channel(1))] == [
            (2, False),
            (1, True),
        ]
        await service.rollback(channel(1), ADMIN, 2)  # and forward again
        assert (await service.story_card(channel(1))).model_version == 2
    finally:
        await service.close()
        await store.close()


@pytest.fixture
async def exported(service: StoryService) -> bytes:
    await _train(service, 1, STORY, seed=1)
    await _train(service, 1, DOG, seed=2, mode="append")
    filename, data = await service.export_channel(channel(1), ADMIN)
    assert filename.endswith("-v2.fabulist.zip") and looks_like_export(data)
    return data


@pytest.fixture
async def fresh(tmp_path: Path, pool: TrainingPool) -> AsyncIterator[StoryService]:
    config = tiny_config(tmp_path / "fresh")
    store = await StoryStore.open(config.storage.database)
    service = StoryService(config, store, executor=pool)
    await service.start(warm_workers=False)
    yield service
    await service.close()
    await store.close()


async def test_export_import_into_a_fresh_database_continues_exactly(
    service: StoryService, exported: bytes, fresh: StoryService
) -> None:
    prompts = ("had a general", "dog barked at", "mouse mouse mouse")
    options = ContinueOptions(length=40, temperature=0.0)
    before = [await service.continue_story(channel(1), p, options) for p in prompts]
    with pytest.raises(NotAllowed):
        await service.export_channel(channel(1), MEMBER)
    with pytest.raises(NotAllowed):
        await fresh.import_channel(channel(9), MEMBER, exported)

    imported = await fresh.import_channel(channel(9), ADMIN, exported)
    assert imported.model_version == 1 and len(imported.story_ids) == 2
    assert "Imported 2 stories" in import_text(imported)
    after = [await fresh.continue_story(channel(9), p, options) for p in prompts]
    assert [a.symbols for a in after] == [b.symbols for b in before]
    assert [a.original_share for a in after] == [b.original_share for b in before]
    assert after[0].text.startswith("had a general council to consider")
    assert [
        (s.filename, s.uploader_name, s.symbols) for s in await fresh.figures.stories(channel(9))
    ] == [
        (s.filename, s.uploader_name, s.symbols) for s in await service.figures.stories(channel(1))
    ]
    card = await fresh.story_card(channel(9))
    assert card.has_model and card.stories == 2 and card.vocabulary_size is not None

    # /train with an export file imports: the job is done at once and reports the import.
    job = await fresh.train(channel(10), ADMIN, "x.fabulist.zip", exported, TrainOptions())
    assert job.state == "done"
    result = await fresh.wait_for_job(job.job_id)
    assert result.state == "done" and result.imported and result.model_version == 1
    again = await fresh.continue_story(channel(10), "had a general", options)
    assert again.symbols == before[0].symbols
    # Importing into a channel with a model adds a version: rollback undoes the import.
    await fresh.import_channel(channel(10), ADMIN, exported)
    assert [v.version for v in await fresh.figures.versions(channel(10))] == [2, 1]


# -- tampering ----------------------------------------------------------------------------------


def _rezip(data: bytes, change: Callable[[str, bytes], bytes | None]) -> bytes:
    """Rewrite the export's entries (same order and methods); ``change`` may alter any."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = change(info.filename, source.read(info))
            if content is not None:
                target.writestr(info, content)
    return out.getvalue()


def _manifest(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    def change(name: str, content: bytes) -> bytes:
        if name != "manifest.json":
            return content
        manifest = json.loads(content)
        edit(manifest)
        return json.dumps(manifest).encode()

    return _rezip(data, change)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(manifest: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = manifest
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return edit


def _tampered(data: bytes) -> dict[str, tuple[bytes, str]]:
    model_at = data.index(b"FABULIST")  # the stored model blob's magic
    return {
        "flipped model byte": (_flip(data, model_at + 200), "damaged"),
        "flipped last byte": (_flip(data, len(data) - 3), "damaged"),
        "truncated": (data[: len(data) // 2], "damaged"),
        "story edited, crc fixed": (
            _rezip(
                data,
                lambda n, c: c.replace(b"council", b"cabinet") if n.startswith("stories/") else c,
            ),
            "SHA-256",
        ),
        "model sha wrong": (_manifest(data, _set("model.sha256", "0" * 64)), "SHA-256"),
        "story sha wrong": (_manifest(data, _set("stories.0.sha256", "ab" * 32)), "SHA-256"),
        "version 2": (_manifest(data, _set("version", 2)), "format version 2"),
        "symbols as text": (_manifest(data, _set("stories.0.symbols", "204")), "whole number"),
        "uploader id bool": (_manifest(data, _set("stories.0.uploader_id", True)), "whole number"),
        "story index out of range": (
            _manifest(data, _set("model.story_indexes", [0, 5])),
            "from 0",
        ),
        "repeated index": (_manifest(data, _set("model.story_indexes", [0, 0])), "repeats"),
        "bad time": (_manifest(data, _set("exported_at", "yesterday")), "ISO 8601"),
        "unknown field": (_manifest(data, _set("extra", 1)), "unknown 'extra'"),
        "stories not a list": (_manifest(data, _set("stories", {"a": 1})), "list"),
        "card nested": (_manifest(data, _set("card", {"x": {"y": 1}})), "plain value"),
        "manifest not json": (
            _rezip(data, lambda n, c: b"{not json" if n == "manifest.json" else c),
            "JSON",
        ),
        "story missing": (
            _rezip(data, lambda n, c: None if n == "stories/0002.txt" else c),
            "do not match the manifest",
        ),
        "vocabulary differs": (
            _rezip(data, lambda n, c: b'["a", "b"]' if n == "vocabulary.json" else c),
            "vocabulary.json",
        ),
        "story control characters": (
            _fix_sha(_rezip(data, lambda n, c: c + b"\x00" if n == "stories/0001.txt" else c), 0),
            "control character",
        ),
        "not an export": (b"PK\x03\x04" + bytes(100), "header"),
    }


def _fix_sha(data: bytes, index: int) -> bytes:
    """Re-sign a story entry's sha256 and size in the manifest, as a careful forger would."""
    content = zipfile.ZipFile(io.BytesIO(data)).read(f"stories/{index + 1:04d}.txt")

    def edit(manifest: dict[str, Any]) -> None:
        manifest["stories"][index]["sha256"] = hashlib.sha256(content).hexdigest()
        manifest["stories"][index]["bytes"] = len(content)

    return _manifest(data, edit)


async def test_tampered_exports_are_rejected_and_nothing_changes(
    exported: bytes, fresh: StoryService
) -> None:
    store = fresh.store
    await fresh.import_channel(channel(5), ADMIN, exported)  # a channel with something in it
    stories = await store.list_stories(5)
    versions = await fresh.figures.versions(channel(5))
    cases = _tampered(exported)
    for name, (data, message) in cases.items():
        for target in (4, 5):
            with pytest.raises(InvalidUpload, match=message) as error:
                await fresh.import_channel(channel(target), ADMIN, data)
            assert "fabulist export" in error.value.message or "Story" in error.value.message, name
    # The /train path refuses them just the same.
    with pytest.raises(InvalidExport):
        await fresh.train(channel(4), ADMIN, "x.zip", cases["model sha wrong"][0], TrainOptions())
    assert await store.list_stories(4) == [] and await store.jobs(4) == []
    assert await store.list_models(4) == []
    assert await store.list_stories(5) == stories
    assert await fresh.figures.versions(channel(5)) == versions
    assert await store.integrity_check() == "ok"


def test_zip_bombs_and_oversize_refused_before_decompression() -> None:
    limits = ExportLimits(story_bytes=1 << 20, file_bytes=1 << 20)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w") as archive:
        info = zipfile.ZipInfo("mimetype")
        archive.writestr(info, b"application/vnd.fabulist.export+zip")
        for name in ("manifest.json", "vocabulary.json", "model.bin"):
            archive.writestr(name, b"{}")
        archive.writestr("stories/0001.txt", bytes(64 << 20), zipfile.ZIP_DEFLATED)
    data = bomb.getvalue()
    assert len(data) < 1 << 20 and looks_like_export(data)
    with pytest.raises(InvalidExport, match="MiB"):
        read_export(data, limits)
    with pytest.raises(InvalidExport, match="larger than"):
        read_export(data + bytes(1 << 20), limits)
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), b"application/vnd.fabulist.export+zip")
        for index in range(60):
            archive.writestr(f"stories/{index:04d}.txt", b"x")
    with pytest.raises(InvalidExport, match="more than 50"):
        read_export(many.getvalue(), ExportLimits())


async def test_story_limits_apply_to_imports(
    tmp_path: Path, exported: bytes, pool: TrainingPool
) -> None:
    config = tiny_config(tmp_path / "small", limits={"stories_per_channel": 1})
    store = await StoryStore.open(config.storage.database)
    service = StoryService(config, store, executor=pool)
    try:
        with pytest.raises(InvalidExport, match="more than 1 stories"):
            await service.import_channel(channel(1), ADMIN, exported)
        assert await store.list_stories(1) == []
    finally:
        await service.close()
        await store.close()


async def test_an_import_over_the_channel_s_story_limit_is_refused_in_the_member_s_language(
    tmp_path: Path, exported: bytes, pool: TrainingPool
) -> None:
    """The store counts the channel's stories in its transaction; its refusal is a message
    the member reads in their language, with the counts."""
    config = tiny_config(tmp_path / "two", limits={"stories_per_channel": 2})
    store = await StoryStore.open(config.storage.database)
    service = StoryService(config, store, executor=pool)
    await service.start(warm_workers=False)
    try:
        await _train(service, 1, CHAPTER, seed=1)
        with pytest.raises(InvalidUpload) as refused:
            await service.import_channel(channel(1), ADMIN, exported)
        assert refused.value.message == (
            "The export cannot be imported here: this channel holds 1 stories and the file 2 "
            "new ones; the limit is 2."
        )
        spanish = Catalogue.load().language("es-ES")
        assert user_error_message(refused.value, spanish) == (
            "La exportación no se puede importar aquí: este canal tiene 1 historias y el "
            "archivo 2 nuevas; el límite es 2."
        )
        assert len(await store.list_stories(1)) == 1
    finally:
        await service.close()
        await store.close()
