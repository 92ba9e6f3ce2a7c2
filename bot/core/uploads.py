"""Uploads: decoding a story's bytes and checking it before anything is stored.

Pure functions (the service runs them in a thread for large files); errors are InvalidUpload
with a message for the member.
"""

from __future__ import annotations

import codecs
import hashlib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from bot.display import byte_size
from bot.errors import InvalidUpload
from bot.messages import Number, Phrase
from model import tokenize

_BINARY_MAGIC = {
    b"\x89PNG": Phrase("a PNG image"),
    b"PK\x03\x04": Phrase("a zip archive"),
    b"\x7fELF": Phrase("an executable program"),
    b"MZ": Phrase("a Windows program"),
    b"%PDF": Phrase("a PDF document"),
    b"\x1f\x8b": Phrase("a gzip archive"),
    b"\xff\xd8\xff": Phrase("a JPEG image"),
    b"GIF8": Phrase("a GIF image"),
    b"SQLite format 3": Phrase("an SQLite database"),
}
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v")


@dataclass(frozen=True)
class PreparedStory:
    text: str
    encoding: str
    sha256: str
    symbols: int
    vocabulary_size: int
    filtered_words: int = 0  # cut out by the server's word filters (``text_filter``)


def decode_story(data: bytes) -> tuple[str, str]:
    """Bytes -> (text, encoding). UTF-8 with or without BOM, UTF-16 with BOM; else InvalidUpload."""
    if not data:
        raise InvalidUpload("The file is empty.")
    kind = next((name for magic, name in _BINARY_MAGIC.items() if data.startswith(magic)), None)
    if data.startswith(codecs.BOM_UTF8):
        encoding, body = "utf-8-sig", data
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, body = "utf-16", data
    else:
        encoding, body = "utf-8", data
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError:
        if kind is not None or b"\x00" in data[:4096]:
            raise InvalidUpload(
                "This looks like {kind}, not a text story. Upload a plain .txt file.",
                kind=kind or Phrase("a binary file"),
            ) from None
        raise InvalidUpload(
            "The file is not UTF-8 text (it may be Latin-1 or Windows-1252). "
            "Save it as UTF-8 and upload it again."
        ) from None
    bad = next(
        (ch for ch in text if unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS),
        None,
    )
    if bad is not None:
        if kind is not None:
            raise InvalidUpload("This looks like {kind}, not a text story.", kind=kind)
        raise InvalidUpload(
            "The file contains a control character ({character}), so it is not a plain text story.",
            character=f"U+{ord(bad):04X}" + (", NUL" if bad == chr(0) else ""),
        )
    if not text.strip().lstrip("\ufeff"):
        raise InvalidUpload("The file has no text in it.")
    return text, encoding.removesuffix("-sig") + ("-bom" if encoding == "utf-8-sig" else "")


def prepare_story(
    data: bytes,
    *,
    n_input: int,
    max_symbols: int,
    text_filter: Callable[[str], tuple[str, int]] | None = None,
) -> PreparedStory:
    """Decode and check a story. ``text_filter`` (the server's word filters) returns the text
    to keep and how many words it cut, or refuses it; the checks apply to what it keeps."""
    text, encoding = decode_story(data)
    filtered = 0
    if text_filter is not None:
        text, filtered = text_filter(text)
    tokens = tokenize(text)
    if len(tokens) < n_input + 1:
        raise InvalidUpload(
            "The story is too short: {count} words and punctuation marks; "
            "at least {needed} are needed.",
            count=len(tokens),
            needed=n_input + 1,
        )
    if len(tokens) > max_symbols:
        raise InvalidUpload(
            "The story is too long: {count} words and punctuation marks; the limit is {limit}.",
            count=Number(len(tokens)),
            limit=Number(max_symbols),
        )
    distinct = len(set(tokens))
    if distinct < 2:
        raise InvalidUpload("The story repeats a single word; it needs at least two different.")
    return PreparedStory(
        text=text,
        encoding=encoding,
        sha256=hashlib.sha256(data).hexdigest(),
        symbols=len(tokens),
        vocabulary_size=distinct,
        filtered_words=filtered,
    )


def clean_filename(filename: str) -> str:
    """A display name only (never used as a path): last path part, no control characters."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return (name or "story.txt")[:100]


def is_export_name(filename: str | None) -> bool:
    return filename is not None and filename.lower().endswith((".zip", ".fabulist"))


def check_upload_size(size: int, limit: int) -> None:
    """Reject by the attachment's declared size, before downloading it."""
    if size <= 0:
        raise InvalidUpload("The file is empty.")
    if size > limit:
        raise InvalidUpload(
            "The file is {size}; the limit is {limit}. Upload a shorter story.",
            size=byte_size(size),
            limit=byte_size(limit),
        )
