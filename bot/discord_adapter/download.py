"""Downloading an attachment, never more than the configured limit (+1 byte to tell)."""

from __future__ import annotations

import logging

import aiohttp
import discord

from bot.display import byte_size
from bot.errors import InvalidUpload

log = logging.getLogger(__name__)

DOWNLOAD_CHUNK_BYTES = 64 * 1024
DOWNLOAD_TIMEOUT_SECONDS = 60.0


class CappedDownloader:
    """One HTTP session for the cog's downloads; ``close`` it on unload."""

    def __init__(self) -> None:
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def download(self, attachment: discord.Attachment, limit: int) -> bytes:
        """Read the attachment, but never more than the configured limit (+1 byte to tell)."""
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_SECONDS)
            self._http = aiohttp.ClientSession(timeout=timeout)
        buffer = bytearray()
        try:
            async with self._http.get(attachment.url) as response:
                response.raise_for_status()
                async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
                    buffer.extend(chunk)
                    if len(buffer) > limit:
                        break
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("downloading attachment %s failed: %r", attachment.id, exc)
            raise InvalidUpload("I couldn't download the attachment; please try again.") from None
        if len(buffer) > limit:
            # The metadata understated the size; the exact size is unknown (we stopped reading).
            raise InvalidUpload(
                "The file is larger than the {limit} limit (larger than its upload said). "
                "Upload a shorter story.",
                limit=byte_size(limit),
            )
        return bytes(buffer)
