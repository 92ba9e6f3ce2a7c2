"""Which store a configuration names, opened: SQLite (the default) or PostgreSQL.

``storage.url`` (or ``FABULIST_DATABASE_URL``) is ``sqlite:///path`` or ``postgresql://...``;
without it the SQLite file ``storage.database``. A PostgreSQL password may come from
``storage.password_file`` instead of the URL. URLs are shown only through ``redact_url``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import quote, urlsplit, urlunsplit

from bot.config import StorageConfig
from bot.errors import StorageError

if TYPE_CHECKING:
    from bot.storage import StoryStore


def with_password(url: str, password_file: Path | None) -> str:
    """``url`` with the password read from ``password_file`` (if the URL has none)."""
    if password_file is None:
        return url
    parts = urlsplit(url)
    if parts.password is not None:
        return url
    try:
        password = password_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StorageError(
            f"storage.password_file {password_file} cannot be read: {exc.strerror}"
        ) from None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(parts.username or '', safe='')}:{quote(password, safe='')}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def storage_url(storage: StorageConfig) -> str:
    """The configured store as a URL (the SQLite default too), password included."""
    if storage.backend == "sqlite":
        return f"sqlite:///{storage.sqlite_path}"
    assert storage.url is not None
    return with_password(storage.url, storage.password_file)


async def open_store_url(url: str) -> StoryStore:
    """Open (and migrate) the store ``url`` names: sqlite:///path or postgresql://..."""
    if url.startswith("sqlite:///"):
        from bot.storage import StoryStore

        return await StoryStore.open(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        from bot.postgres_store import PostgresStore

        # The same public methods, signatures and records as StoryStore.
        return cast("StoryStore", await PostgresStore.open(url))
    raise StorageError("a storage URL starts with sqlite:/// or postgresql://")


async def open_store(storage: StorageConfig) -> StoryStore:
    """Open the configured store."""
    return await open_store_url(storage_url(storage))
