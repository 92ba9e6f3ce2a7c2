"""Baseline: the schema of fabulist's numbered migrations 1-10, for both dialects.

A database written before Alembic (any numbered version, 10 included) or a fresh one gets the
numbered migrations it lacks (``bot.store.schema.legacy``); one already at 10 only gets stamped.

Revision ID: 0010
Revises: (none)
"""

from __future__ import annotations

from alembic import op

from bot.store.schema.legacy import apply_legacy

revision = "0010"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    apply_legacy(connection, op.get_context().opts.get("where", "the database"))


def downgrade() -> None:
    raise NotImplementedError("the baseline cannot be undone")
