"""Which store a storage URL names, opened: ``sqlite:///path`` or ``postgresql://...``.

``bot.app.open_store`` turns the configuration into a URL (``storage_url``) and opens it here;
``migrate-storage`` opens both of its ends here. A PostgreSQL password may come from a file
instead of the URL (``bot.store.url_password``). URLs reach logs and messages only through
``bot.store.url_password.redact_url``.
"""

from __future__ import annotations

from pathlib import Path

from bot.config import StorageConfig
from bot.core.store import StoryStore
from bot.errors import StorageError


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


async def open_store_url(url: str, settings: StorageConfig | None = None) -> StoryStore:
    """Open (creating and migrating) the store ``url`` names; PostgreSQL's timeout and owner
    lease come from ``settings`` (the defaults without)."""
    if url.startswith("sqlite:///"):
        from bot.store.sqlite import SqliteStoryStore

        return await SqliteStoryStore.open(sqlite_path(url))
    if url.startswith(("postgresql://", "postgres://")):
        from bot.store.postgres import PostgresStoryStore

        settings = settings or StorageConfig()
        return await PostgresStoryStore.open(
            url, timeout=settings.timeout_seconds, lease_seconds=settings.owner_lease_seconds
        )
    raise StorageError("a storage URL starts with sqlite:/// or postgresql://")
