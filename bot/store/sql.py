"""Statements written once for both backends, compiled once per dialect.

A ``Sql`` is SQLAlchemy ``text()`` with named bound parameters (``:channel_id``); the first use
on a dialect compiles it, with SQLAlchemy's compiler for that dialect, into the driver's own
SQL (``?`` for sqlite3/aiosqlite, ``$1`` for asyncpg) and the order of its parameters, and keeps
both: a hot path pays a dictionary lookup, never a compilation. Where the dialects' SQL truly
differs (JSON functions, ``FOR UPDATE``), a statement carries a variant per dialect.

One macro is expanded before compiling: ``IN_IDS(:name)`` is a membership test against a list
of integer ids (``json_each`` of a JSON text on SQLite, ``= ANY`` of an array on PostgreSQL);
``Connection.ids`` gives the parameter's value in the form the dialect takes.

``Connection`` is what the aggregates (``bot.store.aggregates``) run statements on: the same
five calls on both backends, rows that read by column name (``row["id"]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.engine import Dialect

DIALECTS: dict[str, Dialect] = {
    "sqlite": pysqlite.dialect(),
    "postgresql": pg_asyncpg.dialect(),
}
_IN_IDS = re.compile(r"IN_IDS\((:\w+)\)")
_IN_IDS_FORM = {
    "sqlite": r"IN (SELECT value FROM json_each(\1))",
    "postgresql": r"= ANY(CAST(\1 AS BIGINT[]))",
}


class Sql:
    """One statement: the SQL both dialects take, and a variant for a dialect that differs."""

    __slots__ = ("_compiled", "_sql")

    def __init__(self, sql: str, **variants: str) -> None:
        unknown = set(variants) - set(DIALECTS)
        if unknown:
            raise ValueError(f"no such dialect: {sorted(unknown)}")
        self._sql = {name: variants.get(name, sql) for name in DIALECTS}
        self._compiled: dict[str, tuple[str, tuple[str, ...]]] = {}

    def compiled(self, dialect: str) -> tuple[str, tuple[str, ...]]:
        """(the driver's SQL, the names of its positional parameters in order)."""
        hit = self._compiled.get(dialect)
        if hit is None:
            source = _IN_IDS.sub(_IN_IDS_FORM[dialect], self._sql[dialect])
            compiled = text(source).compile(dialect=DIALECTS[dialect])
            hit = (compiled.string, tuple(compiled.positiontup or ()))
            self._compiled[dialect] = hit
        return hit

    def __repr__(self) -> str:
        return f"Sql({self._sql['sqlite']!r})"


class Connection:
    """A backend's connection (or its share of one) running ``Sql`` statements."""

    dialect: ClassVar[str]

    def bind(self, statement: Sql, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The driver's SQL and its positional arguments."""
        sql, names = statement.compiled(self.dialect)
        return sql, [params[name] for name in names]

    def ids(self, values: Iterable[int]) -> Any:
        """``values`` as an ``IN_IDS`` parameter."""
        raise NotImplementedError

    async def fetch(self, sql: Sql, /, *, bulk: bool = False, **params: Any) -> Sequence[Any]:
        """All rows. ``bulk``: a statement moving blobs or whole texts (a longer timeout)."""
        raise NotImplementedError

    async def fetchrow(self, sql: Sql, /, *, bulk: bool = False, **params: Any) -> Any:
        """The first row, or None."""
        raise NotImplementedError

    async def fetchval(self, sql: Sql, /, *, bulk: bool = False, **params: Any) -> Any:
        """The first row's first value, or None."""
        raise NotImplementedError

    async def execute(self, sql: Sql, /, *, bulk: bool = False, **params: Any) -> int:
        """Run a statement; the number of rows it changed."""
        raise NotImplementedError

    async def executemany(self, sql: Sql, rows: Iterable[Mapping[str, Any]]) -> None:
        raise NotImplementedError
