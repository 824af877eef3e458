"""Journal rows say which engine process wrote them: a nullable engine_id column.

Rows written before this revision keep NULL, and their hash is computed without the field exactly as
before (engine/journal.py:row_hash), so an old journal still verifies after the upgrade. New rows carry
the writer's id and the hash covers it (docs/adr/0007-one-chain-per-account.md).

ADD COLUMN of a nullable column without a default changes no existing row, so the append-only triggers
of 0002 (which refuse UPDATE) are not involved, on SQLite or PostgreSQL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("journal", sa.Column("engine_id", sa.String(64), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE DROP COLUMN on both (SQLite >= 3.35): a batch table rebuild would lose 0002's triggers
    op.execute("ALTER TABLE journal DROP COLUMN engine_id")
