"""The database itself refuses to change or remove journal rows.

SQLite: BEFORE UPDATE / BEFORE DELETE triggers abort with 'journal is append-only'.
PostgreSQL: one trigger function raising the same message, fired BEFORE UPDATE OR DELETE (each row) and
BEFORE TRUNCATE (the statement). Triggers are not SQLAlchemy metadata: the metadata-equality test is
unaffected; tests/journal/test_tamper_triggers.py proves them.

An owner of the SQLite file, or a PostgreSQL superuser or table owner, can still drop or disable the
triggers: that is what the signed checkpoints (engine/checkpoint.py) detect. See docs/SECURITY.md for the
INSERT/SELECT-only PostgreSQL role the engine should run as.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MESSAGE = "journal is append-only"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event, name in (("UPDATE", "journal_no_update"), ("DELETE", "journal_no_delete")):
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {event} ON journal "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )
        return
    op.execute(
        "CREATE FUNCTION journal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege'; END $$"
    )
    op.execute(
        "CREATE TRIGGER journal_no_update_delete BEFORE UPDATE OR DELETE ON journal "
        "FOR EACH ROW EXECUTE FUNCTION journal_append_only()"
    )
    op.execute(
        "CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON journal "
        "FOR EACH STATEMENT EXECUTE FUNCTION journal_append_only()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS journal_no_update")
        op.execute("DROP TRIGGER IF EXISTS journal_no_delete")
        return
    op.execute("DROP TRIGGER IF EXISTS journal_no_truncate ON journal")
    op.execute("DROP TRIGGER IF EXISTS journal_no_update_delete ON journal")
    op.execute("DROP FUNCTION IF EXISTS journal_append_only()")
