"""The auditors' journal copy: rows inserted exactly as published (a mirror computes no hash of its own;
it checks each row's link and hash before inserting, in adapters.nats.mirror)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, text

from engine.journal import GENESIS_HASH, RAW_COLUMNS, RawRow
from engine.persistence.database import make_engines
from engine.persistence.migrate import ensure_schema, upgrade

_COLUMNS = ", ".join(RAW_COLUMNS)
_INSERT = text(f"INSERT INTO journal ({_COLUMNS}) VALUES ({', '.join(':' + c for c in RAW_COLUMNS)})")


class MirrorStore:
    def __init__(self, url: str, schema: str | None = None) -> None:
        """Migrates `url` with the repo's migrations first: the mirror has the primary's schema (and its
        append-only triggers). `schema`: the PostgreSQL schema `url` selects, created when missing (an
        account's copy, `propbot mirror --account`)."""
        if schema is not None:
            ensure_schema(url, schema)
        upgrade(url)
        self.url = url
        self._writer, self._reader = make_engines(url)

    def head(self) -> tuple[int, str]:
        with self._reader.connect() as conn:
            row = conn.execute(text("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1")).first()
        return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))

    def hashes(self, seqs: Sequence[int]) -> dict[int, str]:
        """The stored hash of each of `seqs` the mirror holds."""
        if not seqs:
            return {}
        with self._reader.connect() as conn:
            found = conn.execute(
                text("SELECT seq, hash FROM journal WHERE seq IN :seqs").bindparams(
                    bindparam("seqs", expanding=True)
                ),
                {"seqs": list(seqs)},
            )
            return {int(seq): str(digest) for seq, digest in found}

    def insert(self, rows: Sequence[RawRow]) -> None:
        """One transaction; the primary key refuses a seq inserted twice."""
        if not rows:
            return
        with self._writer.begin() as conn:
            conn.execute(_INSERT, [dict(zip(RAW_COLUMNS, r, strict=True)) for r in rows])

    def close(self) -> None:
        self._writer.dispose()
        if self._reader is not self._writer:
            self._reader.dispose()
