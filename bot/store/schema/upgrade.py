"""Run Alembic to its head on an open SQLAlchemy connection, inside the caller's transaction.

No ``alembic.ini`` at run time: the chain is this package's ``versions/`` (package data). The
caller holds the transaction, so whatever it takes first (PostgreSQL's advisory lock, SQLite's
``BEGIN IMMEDIATE``) covers the whole upgrade, and a failed upgrade changes nothing.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection

from bot.errors import StorageError
from bot.store.schema.legacy import LATEST, apply_legacy, legacy_version
from bot.store.tables import metadata


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files(__package__)))
    return config


def _script(config: Config | None = None) -> ScriptDirectory:
    return ScriptDirectory.from_config(config or _config())


@functools.cache
def head() -> str:
    """The newest revision of the chain."""
    revision = _script().get_current_head()
    assert revision is not None
    return revision


def upgrade(connection: Connection, where: str) -> None:
    """Bring the database to the chain's head; StorageError if it is newer than this code.

    The numbered migrations a database lacks come first, whatever its stamp says (the baseline
    stands for all ten; a stamped database at 10 has none to apply)."""
    legacy = legacy_version(connection)
    if legacy > LATEST:
        raise StorageError(
            f"database {where} has schema version {legacy}, newer than this fabulist's "
            f"{LATEST}; upgrade fabulist"
        )
    apply_legacy(connection, where, legacy)
    config = _config()
    script = _script(config)

    def to_head(revision: Any, context: Any) -> Any:
        return script._upgrade_revs("head", revision)

    with EnvironmentContext(config, script, fn=to_head, destination_rev="head") as env:
        env.configure(
            connection=connection,
            render_as_batch=connection.dialect.name == "sqlite",
            target_metadata=metadata,
        )
        try:
            env.run_migrations()
        except CommandError as exc:  # a revision this code does not know: a newer fabulist's
            raise StorageError(
                f"database {where} has a schema newer than this fabulist's ({exc}); "
                "upgrade fabulist"
            ) from exc
