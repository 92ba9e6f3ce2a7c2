"""Baseline: the schema of fabulist's numbered migrations 1-10, for both dialects.

The chain runs only through ``bot.store.schema.upgrade.upgrade``, which applies the numbered
migrations a database lacks (``bot.store.schema.legacy``) before it: a database written before
Alembic (any numbered version, 10 included) or a fresh one is at 10 when this revision stamps it.

Revision ID: 0010
Revises: (none)
"""

from __future__ import annotations

revision = "0010"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: the numbered migrations were applied before the chain ran."""


def downgrade() -> None:
    raise NotImplementedError("the baseline cannot be undone")
