"""The store's aggregates, written once for SQLite and PostgreSQL (see ``bot.store.sql``): one
mixin per aggregate over ``bot.store.base.StoreBase``; each backend's store class puts its
plumbing (``SqliteBase``, ``PostgresBase``) under them."""
