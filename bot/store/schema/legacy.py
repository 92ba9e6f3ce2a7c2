"""The numbered migrations 1-10 (frozen) and the legacy schema version a database records."""

from __future__ import annotations

import re
import sqlite3
from importlib import resources

from sqlalchemy import Connection, text

from bot.errors import StorageError

_MIGRATION = re.compile(r"^-- migration (\d+)\s*$", re.MULTILINE)
_SET_VERSION = text("UPDATE schema_version SET version = :version")
_FILES = {"sqlite": "legacy_sqlite.sql", "postgresql": "legacy_postgresql.sql"}


def load_legacy(dialect: str, text_: str | None = None) -> list[tuple[int, str]]:
    """Split a dialect's legacy file into (version, sql) pairs; versions must be 1, 2, 3..."""
    if text_ is None:
        source = resources.files(__package__).joinpath(_FILES[dialect])
        text_ = source.read_text(encoding="utf-8")
    parts = _MIGRATION.split(text_)
    migrations = [(int(parts[i]), parts[i + 1]) for i in range(1, len(parts), 2)]
    for expected, (version, _) in enumerate(migrations, start=1):
        if version != expected:
            raise StorageError(
                f"{_FILES[dialect]}: migration {version} found where {expected} expected"
            )
    return migrations


LATEST = load_legacy("sqlite")[-1][0]  # 10: the version Alembic's baseline stands for


def statements(sql: str) -> list[str]:
    """A migration's statements, one by one (comments and strings may hold ``;``)."""
    found, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            found.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") for part in buffer.strip().splitlines()
    ):
        raise StorageError(f"an unterminated statement in a migration: {buffer.strip()[:80]}")
    return [s for s in found if s]


def legacy_version(connection: Connection) -> int:
    """The numbered migration a database has (0: none); PostgreSQL's table is created here."""
    if connection.dialect.name == "sqlite":
        return int(connection.exec_driver_sql("PRAGMA user_version").scalar_one())
    connection.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
    )
    current = connection.exec_driver_sql("SELECT max(version) FROM schema_version").scalar()
    if current is None:
        connection.exec_driver_sql("INSERT INTO schema_version (version) VALUES (0)")
        return 0
    return int(current)


def apply_legacy(connection: Connection, where: str, current: int) -> None:
    """Inside the upgrade's transaction: the numbered migrations after ``current`` (the
    database's :func:`legacy_version`)."""
    dialect = connection.dialect.name
    for version, sql in load_legacy(dialect):
        if version <= current:
            continue
        try:
            for statement in statements(sql):
                connection.exec_driver_sql(statement)
            if dialect == "sqlite":
                # PRAGMA takes no parameters; the version is an int from the legacy file.
                connection.exec_driver_sql(f"PRAGMA user_version = {int(version)}")
            else:
                connection.execute(_SET_VERSION, {"version": version})
        except Exception as exc:
            raise StorageError(f"migration {version} of {where} failed: {exc}") from exc
