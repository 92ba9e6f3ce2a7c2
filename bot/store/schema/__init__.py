"""The store's schema, for both backends: one Alembic chain (``versions/``), run at open.

History: schema versions 1-10 were numbered migrations, one SQL file per dialect, kept frozen here
(``legacy_sqlite.sql``, ``legacy_postgresql.sql``; the version in ``PRAGMA user_version`` or the
``schema_version`` table). Alembic's baseline revision ``0010`` applies the numbered migrations a
database lacks, so a fresh database, one of any earlier version and one written at version 10
all reach the same schema in place; later revisions are Alembic's, written once for both
dialects (``render_as_batch`` on SQLite). See ``upgrade``.
"""
