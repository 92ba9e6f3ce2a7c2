"""A storage URL's password: read from a file into the URL (``with_password``), and hidden
from every log line and message (``redact_url``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

from bot.errors import StorageError


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
    return _with_password(parts, quote(password, safe=""))


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and error messages)."""
    parts = urlsplit(url)
    return url if parts.password is None else _with_password(parts, "***")


def _with_password(parts: SplitResult, password: str) -> str:
    """The URL of ``parts`` with ``password`` (already quoted) in place of its own."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:{password}@{host}"  # the username as the URL spells it
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
