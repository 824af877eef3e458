"""The outbox relay's durable cursor, and a wake-up NOTIFY on every journal append (PostgreSQL).

`relay_cursor` holds, per journal source (a name: one relay per journal chain), the last seq that
JetStream acknowledged. It is an ordinary, writable table: the append-only triggers of 0002 are on the
journal table only.

On PostgreSQL an AFTER INSERT statement trigger on the journal calls pg_notify('propbot_journal',
<schema>). The notification is delivered at commit and only wakes the relay; the relay re-reads the
journal by seq and never trusts the payload. PostgreSQL folds identical notifications within one
transaction into one, so a group commit costs one wake-up. SQLite has no NOTIFY: the relay polls there.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CHANNEL = "propbot_journal"


def upgrade() -> None:
    op.create_table(
        "relay_cursor",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("last_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute(
        "CREATE FUNCTION journal_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{CHANNEL}', TG_TABLE_SCHEMA); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER journal_notify_insert AFTER INSERT ON journal "
        "FOR EACH STATEMENT EXECUTE FUNCTION journal_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER IF EXISTS journal_notify_insert ON journal")
        op.execute("DROP FUNCTION IF EXISTS journal_notify()")
    op.drop_table("relay_cursor")
