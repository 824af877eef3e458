"""SQLAlchemy Core metadata of the journal and the relay cursor; alembic's migrations must produce exactly
this schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

journal = Table(
    "journal",
    metadata,
    # seq is assigned by the writer under the chain lock, so it is gapless and part of the hash
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False),
    Column("stream", String(16), nullable=False),
    Column("stream_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("trigger", String(48), nullable=False),
    Column("from_state", String(24), nullable=True),
    Column("to_state", String(24), nullable=True),
    Column("payload", Text, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("schema_version", SmallInteger, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # Which engine process wrote the row (migration 0004); NULL on older rows. Part of the hash when set
    Column("engine_id", String(64), nullable=True),
    UniqueConstraint("stream", "stream_id", "version", name="uq_journal_stream_version"),
    Index("ix_journal_created_at", "created_at"),
)

# The outbox relay's durable position per journal source (migration 0003): the last seq JetStream acked
relay_cursor = Table(
    "relay_cursor",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("last_seq", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
    Column("updated_at", String(32), nullable=False),
)
