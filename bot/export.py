"""The channel export format: one zip file with a JSON manifest, the stories and the model blob.

``write_export`` builds it; ``read_export`` parses one received from anyone, treating every byte as
untrusted, and raises :class:`InvalidExport` (a ``UserError``) on anything wrong. Neither unpickles
nor runs anything: the container is a zip read in memory (never extracted to disk), the manifest is
JSON, the model is :func:`model.serialization.from_bytes`' own checked format. The full
description, with the rationale, is in ``docs/export-format.md``; keep the two in step.

Layout, format version 1 (entry order is fixed; no other entries are allowed)::

    mimetype             stored: b"application/vnd.fabulist.export+zip" (the magic, at offset 38)
    manifest.json        UTF-8 JSON object, see docs/export-format.md
    vocabulary.json      UTF-8 JSON list of the model's symbols (must equal the blob's)
    model.bin            stored, model.serialization.to_bytes() of the active model
    stories/0001.txt     UTF-8 text of each story, in upload order (0001, 0002, ...)

Limits are checked on the zip's central directory before anything is decompressed, and each read
is bounded by the declared size, so a zip bomb costs no more than the limits allow.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.display import byte_size
from bot.errors import InvalidUpload
from bot.messages import N_, Phrase
from model import ModelError, TrainedModel, from_bytes
from model.config import MAX_N_INPUT

logger = logging.getLogger(__name__)

FORMAT = "fabulist-export"
FORMAT_VERSION = 1
MIMETYPE = b"application/vnd.fabulist.export+zip"
MAGIC = b"PK\x03\x04"
MIMETYPE_NAME = "mimetype"
MANIFEST_NAME = "manifest.json"
VOCABULARY_NAME = "vocabulary.json"
MODEL_NAME = "model.bin"
EXPORT_SUFFIX = ".fabulist.zip"
_STORY_NAME = "stories/{:04d}.txt"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_TEXT_FIELD = 200
_MAX_CARD_FIELDS = 40
_ZIP_STORED_OR_DEFLATED = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_NAMED_KEYS = 6  # missing or unknown manifest keys a refusal names
_LARGER = N_("{name} is larger than its {limit} limit.")


class InvalidExport(InvalidUpload):
    """The file is not a valid fabulist export (tampered, truncated, too large, wrong version)."""


def _bad(reason: str, /, **params: object) -> InvalidExport:
    """``reason``: a message (the catalogue tool reads ``_bad`` calls) and its parameters."""
    return InvalidExport(
        "This is not a valid fabulist export: {reason} Nothing was imported.",
        reason=Phrase(reason, **params),
    )


@dataclass(frozen=True)
class ExportLimits:
    """Bounds for an import; anything beyond them is refused before it is decompressed."""

    file_bytes: int = 160 << 20
    model_bytes: int = 128 << 20
    story_bytes: int = 4 << 20
    stories: int = 50
    total_story_bytes: int = 64 << 20
    manifest_bytes: int = 1 << 20
    vocabulary_bytes: int = 16 << 20

    @property
    def uncompressed_bytes(self) -> int:
        return (
            len(MIMETYPE)
            + self.manifest_bytes
            + self.vocabulary_bytes
            + self.model_bytes
            + self.total_story_bytes
        )


@dataclass(frozen=True)
class ExportedStory:
    filename: str
    uploader_id: int | None
    uploader_name: str | None
    created_at: str
    text: str
    sha256: str  # of ``text`` encoded as UTF-8 (the entry's bytes)
    symbols: int


@dataclass(frozen=True)
class ChannelExport:
    channel_name: str | None
    exported_at: str
    stories: tuple[ExportedStory, ...]
    model_blob: bytes
    model_sha256: str
    model_version: int
    model_created_at: str
    model_story_indexes: tuple[int, ...]  # 0-based indexes into ``stories``, training order
    options: dict[str, Any]  # layers / n_input / seed it was trained with (informational)
    card: dict[str, Any] = field(default_factory=dict)  # the story card at export time
    model: TrainedModel | None = field(default=None, compare=False)  # set by read_export


def looks_like_export(data: bytes) -> bool:
    """True if ``data`` starts like an export (zip whose first entry is our mimetype)."""
    start = 30 + len(MIMETYPE_NAME)
    return (
        data.startswith(MAGIC)
        and data[30:start] == MIMETYPE_NAME.encode()
        and data[start : start + len(MIMETYPE)] == MIMETYPE
    )


def export_filename(channel_name: str | None, version: int) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", channel_name or "channel").strip("-")[:40] or "channel"
    return f"{base}-v{version}{EXPORT_SUFFIX}"


# -- writing -----------------------------------------------------------------------------------


def write_export(export: ChannelExport) -> bytes:
    """The export file's bytes (deterministic for the same input)."""
    stories = []
    for story in export.stories:
        stories.append(
            {
                "filename": story.filename,
                "uploader_id": story.uploader_id,
                "uploader_name": story.uploader_name,
                "created_at": story.created_at,
                "sha256": hashlib.sha256(story.text.encode("utf-8")).hexdigest(),
                "bytes": len(story.text.encode("utf-8")),
                "symbols": story.symbols,
            }
        )
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "exported_at": export.exported_at,
        "channel_name": export.channel_name,
        "stories": stories,
        "model": {
            "version": export.model_version,
            "created_at": export.model_created_at,
            "sha256": hashlib.sha256(export.model_blob).hexdigest(),
            "bytes": len(export.model_blob),
            "story_indexes": list(export.model_story_indexes),
            "options": export.options,
        },
        "card": export.card,
    }
    model = from_bytes(export.model_blob) if export.model is None else export.model
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _write(archive, MIMETYPE_NAME, MIMETYPE, zipfile.ZIP_STORED)
        _write(archive, MANIFEST_NAME, _json_bytes(manifest), zipfile.ZIP_DEFLATED)
        _write(
            archive, VOCABULARY_NAME, _json_bytes(model.vocabulary.to_json()), zipfile.ZIP_DEFLATED
        )
        # Float weights barely compress; storing them keeps export and import fast.
        _write(archive, MODEL_NAME, export.model_blob, zipfile.ZIP_STORED)
        for index, story in enumerate(export.stories, start=1):
            _write(
                archive,
                _STORY_NAME.format(index),
                story.text.encode("utf-8"),
                zipfile.ZIP_DEFLATED,
            )
    return buffer.getvalue()


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1, allow_nan=False).encode("utf-8")


def _write(archive: zipfile.ZipFile, name: str, data: bytes, method: int) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = method
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


# -- reading (untrusted) -----------------------------------------------------------------------


def read_export(data: bytes, limits: ExportLimits) -> ChannelExport:
    """Parse and check an export file; InvalidExport on anything wrong (CPU-bound: use a thread)."""
    if len(data) > limits.file_bytes:
        raise _bad("the file is larger than the {limit} limit.", limit=byte_size(limits.file_bytes))
    if not looks_like_export(data):
        raise _bad("it does not start with the fabulist export header.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise _bad("the zip container is damaged ({error}).", error=str(exc)) from None
    with archive:
        infos = archive.infolist()
        _check_directory(infos, limits)
        entries = {info.filename: info for info in infos}
        if _read(archive, entries[MIMETYPE_NAME], len(MIMETYPE)) != MIMETYPE:
            raise _bad("the mimetype entry is wrong.")
        manifest = _parse_json(_read(archive, entries[MANIFEST_NAME], limits.manifest_bytes))
        version = manifest.get("version") if isinstance(manifest, dict) else None
        if isinstance(manifest, dict) and manifest.get("format") == FORMAT and version != 1:
            raise _bad(
                "it has format version {version}; this fabulist reads version "
                "{supported}. Upgrade fabulist, or export again.",
                version=repr(version),
                supported=FORMAT_VERSION,
            )
        header = _check_manifest(manifest, limits)
        story_names = sorted(n for n in entries if n.startswith("stories/"))
        expected_names = [_STORY_NAME.format(i) for i in range(1, len(header["stories"]) + 1)]
        if story_names != expected_names:
            raise _bad("the story entries do not match the manifest.")
        stories = []
        for name, meta in zip(expected_names, header["stories"], strict=True):
            raw = _read(archive, entries[name], limits.story_bytes)
            _check_digest(name, raw, meta["sha256"], meta["bytes"])
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad("{name} is not UTF-8 text.", name=name) from None
            stories.append(
                ExportedStory(
                    filename=meta["filename"],
                    uploader_id=meta["uploader_id"],
                    uploader_name=meta["uploader_name"],
                    created_at=meta["created_at"],
                    text=text,
                    sha256=meta["sha256"],
                    symbols=meta["symbols"],
                )
            )
        model_meta = header["model"]
        blob = _read(archive, entries[MODEL_NAME], limits.model_bytes)
        _check_digest(MODEL_NAME, blob, model_meta["sha256"], model_meta["bytes"])
        vocabulary = _parse_json(_read(archive, entries[VOCABULARY_NAME], limits.vocabulary_bytes))
    try:
        model = from_bytes(blob)
    except ModelError as exc:
        raise _bad("the model is damaged ({error}).", error=str(exc)) from None
    if vocabulary != list(model.vocabulary.symbols):
        raise _bad("vocabulary.json does not match the model's vocabulary.")
    if any(i >= len(stories) for i in model_meta["story_indexes"]):
        raise _bad("the model names a story that is not in the file.")
    return ChannelExport(
        channel_name=header["channel_name"],
        exported_at=header["exported_at"],
        stories=tuple(stories),
        model_blob=blob,
        model_sha256=model_meta["sha256"],
        model_version=model_meta["version"],
        model_created_at=model_meta["created_at"],
        model_story_indexes=tuple(model_meta["story_indexes"]),
        options=model_meta["options"],
        card=header["card"],
        model=model,
    )


def _check_directory(infos: Sequence[zipfile.ZipInfo], limits: ExportLimits) -> None:
    """Names, order, methods and declared sizes, all before any byte is decompressed."""
    if len(infos) > 4 + limits.stories:
        raise _bad("it holds more than {count} stories.", count=limits.stories)
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise _bad("an entry appears twice.")
    if names[:4] != [MIMETYPE_NAME, MANIFEST_NAME, VOCABULARY_NAME, MODEL_NAME]:
        raise _bad("the entries are not the expected ones.")
    total = 0
    for info in infos:
        if info.filename not in names[:4] and not re.fullmatch(
            r"stories/\d{4}\.txt", info.filename
        ):
            raise _bad("unexpected entry {name}.", name=repr(info.filename[:60]))
        if info.flag_bits & 0x1:
            raise _bad("it is encrypted.")
        if info.compress_type not in _ZIP_STORED_OR_DEFLATED:
            raise _bad("it uses an unsupported compression method.")
        if info.file_size < 0 or info.compress_size < 0:
            raise _bad("an entry has a negative size.")
        limit = {
            MIMETYPE_NAME: len(MIMETYPE),
            MANIFEST_NAME: limits.manifest_bytes,
            VOCABULARY_NAME: limits.vocabulary_bytes,
            MODEL_NAME: limits.model_bytes,
        }.get(info.filename, limits.story_bytes)
        if info.file_size > limit:
            raise _bad(_LARGER, name=info.filename, limit=byte_size(limit))
        total += info.file_size
    if total > limits.uncompressed_bytes:
        raise _bad("its contents exceed {size}.", size=byte_size(limits.uncompressed_bytes))
    story_total = sum(i.file_size for i in infos if i.filename.startswith("stories/"))
    if story_total > limits.total_story_bytes:
        raise _bad("its stories exceed {size} in all.", size=byte_size(limits.total_story_bytes))


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    if info.file_size > limit:
        raise _bad(_LARGER, name=info.filename, limit=byte_size(limit))
    try:
        with archive.open(info) as handle:
            # zipfile never yields more than the declared size and checks the CRC at the end.
            data = handle.read(limit + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as exc:
        raise _bad("{name} is damaged ({error}).", name=info.filename, error=str(exc)) from None
    if len(data) != info.file_size:
        raise _bad("{name} is truncated.", name=info.filename)
    return data


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad("a JSON entry cannot be read ({error}).", error=type(exc).__name__) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _check_digest(name: str, data: bytes, sha256: str, size: int) -> None:
    if len(data) != size:
        raise _bad(
            "{name} has {actual} bytes, the manifest says {declared}.",
            name=name,
            actual=len(data),
            declared=size,
        )
    if hashlib.sha256(data).hexdigest() != sha256:
        raise _bad(
            "{name} does not match its SHA-256 in the manifest (altered or damaged).", name=name
        )


# -- manifest validation -----------------------------------------------------------------------


def _story_field(index: int, field: str) -> Phrase:
    return Phrase("story {index} {field}", index=index, field=field)


def _keys(
    value: object, where: str | Phrase, required: set[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad("{where} must be a JSON object.", where=where)
    missing = required - value.keys()
    unknown = value.keys() - required - optional
    if missing or unknown:
        named = [
            *(Phrase("missing {key}", key=repr(k[:60])) for k in sorted(missing)),
            *(Phrase("unknown {key}", key=repr(k[:60])) for k in sorted(unknown)),
        ][:_NAMED_KEYS]
        detail = named[0]
        for item in named[1:]:
            detail = Phrase("{items}, {item}", items=detail, item=item)
        raise _bad("{where}: {detail}.", where=where, detail=detail)
    return value


def _int(value: object, where: str | Phrase, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(
            "{where} must be a whole number from {low} to {high}.", where=where, low=low, high=high
        )
    return value


def _text(value: object, where: str | Phrase, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_TEXT_FIELD:
        raise _bad(
            "{where} must be a text of 1 to {limit} characters.", where=where, limit=_MAX_TEXT_FIELD
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise _bad("{where} contains control characters.", where=where)
    return value


def _time(value: object, where: str | Phrase) -> str:
    text = _text(value, where)
    assert text is not None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _bad("{where} must be an ISO 8601 time.", where=where) from None
    if parsed.tzinfo is None:
        raise _bad("{where} must include its time zone.", where=where)
    return text


def _sha(value: object, where: str | Phrase) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise _bad("{where} must be a lowercase hex SHA-256.", where=where)
    return value


def _check_manifest(manifest: object, limits: ExportLimits) -> dict[str, Any]:
    top = _keys(
        manifest,
        Phrase("the manifest"),
        {"format", "version", "exported_at", "channel_name", "stories", "model", "card"},
    )
    if top["format"] != FORMAT:
        raise _bad("the manifest's format is not fabulist-export.")
    _int(top["version"], "version", FORMAT_VERSION, FORMAT_VERSION)
    _time(top["exported_at"], "exported_at")
    _text(top["channel_name"], "channel_name", optional=True)
    stories = top["stories"]
    if not isinstance(stories, list) or not 1 <= len(stories) <= limits.stories:
        raise _bad("stories must be a list of 1 to {count} entries.", count=limits.stories)
    for index, story in enumerate(stories, start=1):
        meta = _keys(
            story,
            Phrase("story {index}", index=index),
            {
                "filename",
                "uploader_id",
                "uploader_name",
                "created_at",
                "sha256",
                "bytes",
                "symbols",
            },
        )
        _text(meta["filename"], _story_field(index, "filename"))
        if meta["uploader_id"] is not None:
            _int(meta["uploader_id"], _story_field(index, "uploader_id"), 0, 2**63 - 1)
        _text(meta["uploader_name"], _story_field(index, "uploader_name"), optional=True)
        _time(meta["created_at"], _story_field(index, "created_at"))
        _sha(meta["sha256"], _story_field(index, "sha256"))
        _int(meta["bytes"], _story_field(index, "bytes"), 1, limits.story_bytes)
        _int(meta["symbols"], _story_field(index, "symbols"), 2, 2**31 - 1)
    model = _keys(
        top["model"],
        "model",
        {"version", "created_at", "sha256", "bytes", "story_indexes", "options"},
    )
    _int(model["version"], "model version", 1, 2**31 - 1)
    _time(model["created_at"], "model created_at")
    _sha(model["sha256"], "model sha256")
    _int(model["bytes"], "model bytes", 1, limits.model_bytes)
    indexes = model["story_indexes"]
    if not isinstance(indexes, list) or not indexes:
        raise _bad("model story_indexes must be a non-empty list.")
    for value in indexes:
        _int(value, "model story_indexes", 0, len(stories) - 1)
    if len(set(indexes)) != len(indexes):
        raise _bad("model story_indexes repeats a story.")
    options = _keys(
        model["options"], "model options", set(), frozenset({"layers", "n_input", "seed", "mode"})
    )
    for name, high in (("layers", 2), ("n_input", MAX_N_INPUT), ("seed", 2**31 - 1)):
        if options.get(name) is not None:
            _int(options[name], f"model options {name}", 0, high)
    if options.get("mode") not in (None, "replace", "append", "import"):
        raise _bad("model options mode must be replace, append or import.")
    _check_card(top["card"])
    return top


def _check_card(card: object) -> None:
    """The card is informational; it must still be a small object of plain scalars."""
    if not isinstance(card, Mapping) or len(card) > _MAX_CARD_FIELDS:
        raise _bad("card must be an object of at most {count} fields.", count=_MAX_CARD_FIELDS)
    for key, value in card.items():
        if not isinstance(key, str) or len(key) > 60:
            raise _bad("card has a bad field name.")
        if isinstance(value, str):
            _text(value, f"card {key}")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise _bad("card {key} is not a finite number.", key=key)
        elif value is not None and not isinstance(value, int | bool):
            raise _bad("card {key} must be a plain value.", key=key)
