"""The attacker's tools, for tamper tests: an owner of the database file or a superuser can switch the
append-only triggers off and rewrite rows, recomputing every hash so the chain alone still verifies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, create_engine

from engine.journal import GENESIS_HASH, RAW_COLUMNS, row_hash

Rows = list[list[Any]]
_COLS = ", ".join(RAW_COLUMNS)


def unprotect(conn: Connection) -> None:
    """Switch the append-only triggers off for this connection (SQLite: drop them)."""
    if conn.dialect.name == "sqlite":
        for name in ("journal_no_update", "journal_no_delete"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    else:
        conn.exec_driver_sql("SET session_replication_role = replica")  # superuser: no triggers fire


def rehash(rows: Rows, start: int = 0) -> Rows:
    """Recompute prev_hash and hash from row index `start` on: a consistent rewrite."""
    prev = rows[start - 1][13] if start else GENESIS_HASH
    for r in rows[start:]:
        r[12] = prev
        r[13] = prev = row_hash(prev, *r[:12], engine_id=r[14])
    return rows


def execute(url: str, *sql: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            unprotect(conn)
            for statement in sql:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def rewrite(url: str, mutate: Callable[[Rows], Rows], *, recompute_from: int | None = 0) -> None:
    """Read every row, let `mutate` change the list, store it back (hashes recomputed from index
    `recompute_from` on, unless None)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            unprotect(conn)
            rows = [list(r) for r in conn.exec_driver_sql(f"SELECT {_COLS} FROM journal ORDER BY seq")]
            rows = mutate(rows)
            if recompute_from is not None:
                rehash(rows, recompute_from)
            conn.exec_driver_sql("DELETE FROM journal")
            if rows:
                marks = ", ".join(["?" if conn.dialect.paramstyle == "qmark" else "%s"] * len(RAW_COLUMNS))
                conn.exec_driver_sql(
                    f"INSERT INTO journal ({_COLS}) VALUES ({marks})", [tuple(r) for r in rows]
                )
    finally:
        engine.dispose()
