"""The journal on SQLAlchemy: append-only INSERTs chained by hash, group commit, fast raw scans.

On PostgreSQL each schema holds one account's chain: the chain lock is per schema, so accounts never wait
for each other. With a `WriterLease` every append runs on the lease's own session and first checks that
this session holds the lease (engine/persistence/lease.py): a fenced engine cannot append.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Integer, func, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from engine.errors import EngineError, JournalCorrupt, JournalUnavailable, VersionConflict
from engine.journal import (
    GENESIS_HASH,
    RAW_COLUMNS,
    SCHEMA_VERSION,
    JournalQuery,
    NewEntry,
    RawRow,
    Record,
    format_ts,
    row_hash,
)
from engine.persistence.database import is_sqlite, make_engines
from engine.persistence.lease import LeaseLost, WriterLease, stable_key
from engine.persistence.tables import journal, metadata

# JournalUnavailable is engine.errors' (the writer raises it too), still importable from here
__all__ = ["JournalUnavailable", "SqlJournal"]
_COLUMNS = ", ".join(RAW_COLUMNS)


def _chain_key(schema: str) -> int:
    """The advisory lock every append takes first (PostgreSQL): one chain per schema."""
    return stable_key("propbot.chain", schema)


class SqlJournal:
    """Implements engine.journal.Journal on SQLite or PostgreSQL."""

    def __init__(
        self, url: str, *, now: Callable[[], datetime] | None = None, create: bool = False,
        engine_id: str | None = None, lease: WriterLease | None = None,
    ) -> None:  # fmt: skip
        """`engine_id`: stored in (and hashed with) every row this instance writes. `lease`: append only
        on the lease's session, and only while it holds the account's writer lock (PostgreSQL)."""
        self.url = url
        self.engine_id = engine_id or None
        self.lease = lease
        self._chain_key: int | None = None
        self._sqlite = is_sqlite(url)
        self._writer, self._reader = make_engines(url)
        self._now = now or (lambda: datetime.now(UTC))
        # Pre-rendered driver SQL: Core's per-call compile and bind processing cost more than the INSERT
        mark = "?" if self._writer.dialect.paramstyle == "qmark" else "%s"
        self._insert_sql = f"INSERT INTO journal ({_COLUMNS}) VALUES ({', '.join([mark] * len(RAW_COLUMNS))})"
        # One long-lived writer connection: a pool checkout and reset per append cost more than the INSERT
        self._wconn: Connection | None = None
        self._wlock = threading.Lock()
        self._last_created = ""
        if create:
            metadata.create_all(self._writer)

    @contextmanager
    def _write_tx(self) -> Iterator[Connection]:
        if self.lease is not None:
            with self._wlock, self.lease.writing() as conn, conn.begin():
                yield conn
            return
        with self._wlock:
            if self._wconn is None:
                self._wconn = self._writer.connect()
            conn = self._wconn
            try:
                with conn.begin():
                    yield conn
            except OperationalError:
                # The connection may be broken (server restart, disk): start the next append afresh
                self._wconn = None
                conn.invalidate()
                raise

    # -- writing -------------------------------------------------------------------------------

    def append(self, entries: Sequence[NewEntry]) -> list[Record]:
        result = self.append_groups([entries])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def append_groups(self, groups: Sequence[Sequence[NewEntry]]) -> list[list[Record] | Exception]:
        """One transaction for all groups. A version conflict in any group sends the whole batch down
        the slow path, where each group gets its own savepoint and fails alone."""
        try:
            with self._write_tx() as conn:
                seq, prev = self._tail(conn)
                created = self._created_at()
                records = []
                for group in groups:
                    recs = self._build(group, seq, prev, created)
                    records.append(recs)
                    if recs:
                        seq, prev = recs[-1].seq, recs[-1].hash
                rows = [self._row(r) for recs in records for r in recs]
                if rows:
                    conn.exec_driver_sql(self._insert_sql, rows)
                return list(records)
        except IntegrityError:
            pass
        except OperationalError as exc:
            raise self._write_failure(exc) from exc
        try:
            return self._append_one_by_one(groups)
        except OperationalError as exc:  # the slow path's database failure is the same typed error
            raise self._write_failure(exc) from exc

    def _write_failure(self, exc: OperationalError) -> EngineError:
        if self.lease is not None and self.lease.state == WriterLease.LOST:
            return LeaseLost(f"journal write failed and the writer lease is lost: {exc.orig}")
        return JournalUnavailable(f"journal write failed: {exc.orig}")

    def _append_one_by_one(self, groups: Sequence[Sequence[NewEntry]]) -> list[list[Record] | Exception]:
        out: list[list[Record] | Exception] = []
        with self._write_tx() as conn:
            seq, prev = self._tail(conn)
            created = self._created_at()
            for group in groups:
                recs = self._build(group, seq, prev, created)
                try:
                    with conn.begin_nested():
                        if recs:
                            conn.exec_driver_sql(self._insert_sql, [self._row(r) for r in recs])
                except IntegrityError as exc:
                    ids = sorted({f"{e.stream}/{e.stream_id}@{e.version}" for e in group})
                    out.append(VersionConflict(f"stream version already taken: {', '.join(ids)}", detail=ids))
                    del exc
                    continue
                out.append(recs)
                if recs:
                    seq, prev = recs[-1].seq, recs[-1].hash
        return out

    def _tail(self, conn: Connection) -> tuple[int, str]:
        if not self._sqlite:
            if self._chain_key is None:
                schema = conn.exec_driver_sql("SELECT current_schema()").scalar()
                self._chain_key = _chain_key(str(schema))
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._chain_key})
            if self.lease is not None and not conn.exec_driver_sql(self.lease.held_sql()).scalar():
                self.lease.lose("an append found the lease session without the lock")
                raise LeaseLost("this session does not hold the writer lease: nothing appended")
        row = conn.exec_driver_sql(
            "SELECT seq, hash, created_at FROM journal ORDER BY seq DESC LIMIT 1"
        ).first()
        if row is None:
            return 0, GENESIS_HASH
        self._last_created = max(self._last_created, str(row[2]))
        return int(row[0]), str(row[1])

    def _created_at(self) -> str:
        """One time for every row of a commit (when it was written), read after the chain's tail. It never
        goes backwards (replay refuses that): a clock stepped back keeps the last time."""
        return max(format_ts(self._now()), self._last_created)

    def _build(self, group: Sequence[NewEntry], seq: int, prev: str, created: str) -> list[Record]:
        engine_id = self.engine_id
        out = []
        for e in group:
            seq += 1
            payload = e.payload_json
            digest = row_hash(
                prev, seq, e.stream, e.stream_id, e.version, e.trigger, e.from_state, e.to_state,
                payload, e.actor, e.reason, SCHEMA_VERSION, created, engine_id,
            )  # fmt: skip
            out.append(
                Record(
                    seq,
                    e.stream,
                    e.stream_id,
                    e.version,
                    e.trigger,
                    e.from_state,
                    e.to_state,
                    payload,
                    e.actor,
                    e.reason,
                    SCHEMA_VERSION,
                    created,
                    prev,
                    digest,
                    engine_id,
                    e.payload,
                )
            )
            prev = digest
        return out

    @staticmethod
    def _row(r: Record) -> tuple[Any, ...]:
        return (
            r.seq, r.stream, r.stream_id, r.version, r.trigger, r.from_state, r.to_state, r.payload_json,
            r.actor, r.reason, r.schema_version, r.created_at, r.prev_hash, r.hash, r.engine_id,
        )  # fmt: skip

    def settle(self, timeout_s: float = 5.0) -> None:
        """See engine.journal.Journal.settle. PostgreSQL: a COMMIT whose answer was lost may still be
        running in its backend (a dropped client connection does not stop a COMMIT the server received),
        and a transaction whose COMMIT never arrived stays open until the server notices the dead client.
        Both hold the chain lock until they end, so taking it (and letting it go at once) waits for them;
        `timeout_s` bounds that wait (JournalUnavailable: ask again later). SQLite commits in this process,
        synchronously, on the writer thread: once append_groups has raised, nothing of it can still
        commit."""
        if self._sqlite:
            return
        try:
            with self._reader.connect() as conn, conn.begin():
                schema = conn.exec_driver_sql("SELECT current_schema()").scalar()
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, int(timeout_s * 1000))}")
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _chain_key(str(schema))})
        except DBAPIError as exc:
            raise JournalUnavailable(
                f"journal settle failed: {type(exc.orig).__name__}: {exc.orig}"[:300]
            ) from exc

    # -- reading -------------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A reader connection; a database that cannot be read is JournalUnavailable (503), never a raw
        driver error (500)."""
        try:
            with self._reader.connect() as conn:
                yield conn
        except DBAPIError as exc:
            raise JournalUnavailable(f"journal read failed: {type(exc.orig).__name__}") from exc

    def query(self, q: JournalQuery) -> list[Record]:
        stmt = select(journal).where(journal.c.seq > q.after_seq)
        for col, val in (
            (journal.c.stream, q.stream),
            (journal.c.stream_id, q.stream_id),
            (journal.c.trigger, q.trigger),
            (journal.c.actor, q.actor),
        ):
            if val is not None:
                stmt = stmt.where(col == val)
        if q.since is not None:
            stmt = stmt.where(journal.c.created_at >= format_ts(q.since))
        if q.until is not None:
            stmt = stmt.where(journal.c.created_at < format_ts(q.until))
        stmt = stmt.order_by(journal.c.seq).limit(q.limit)
        with self._read() as conn:
            return [Record(*row) for row in conn.execute(stmt)]

    def stream(self, stream: str, stream_id: str) -> list[Record]:
        stmt = (
            select(journal)
            .where(journal.c.stream == stream, journal.c.stream_id == stream_id)
            .order_by(journal.c.version)
        )
        with self._read() as conn:
            return [Record(*row) for row in conn.execute(stmt)]

    def stream_version(self, stream: str, stream_id: str) -> int:
        stmt = select(func.max(journal.c.version)).where(
            journal.c.stream == stream, journal.c.stream_id == stream_id
        )
        with self._read() as conn:
            return int(conn.execute(stmt).scalar() or 0)

    def hash_at(self, seq: int) -> str | None:
        """The stored hash of row `seq`, or None when there is no such row (checkpoint comparison)."""
        with self._read() as conn:
            value = conn.execute(select(journal.c.hash).where(journal.c.seq == seq)).scalar()
        return None if value is None else str(value)

    def head(self) -> tuple[int, str]:
        """(last seq, its hash), (0, GENESIS_HASH) when empty."""
        with self._read() as conn:
            row = conn.execute(
                select(journal.c.seq, journal.c.hash).order_by(journal.c.seq.desc()).limit(1)
            ).first()
        return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))

    def last_seq(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.max(journal.c.seq))).scalar() or 0)

    def count(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(journal)).scalar() or 0)

    def scan(self, batch_size: int = 10_000, after_seq: int = 0) -> Iterator[RawRow]:
        """Raw DBAPI rows after `after_seq` in keyset-paginated batches: replay reads a million rows and
        Row objects would double its cost; no connection or transaction is held while the caller works
        between batches."""
        sql = f"SELECT {_COLUMNS} FROM journal WHERE seq > {{after}} ORDER BY seq LIMIT {int(batch_size)}"
        after = int(after_seq)
        while True:
            try:
                raw = self._reader.raw_connection()
            except Exception as exc:  # the connect hook's PRAGMAs run on the raw driver connection
                raise self._read_failure(exc, after) from exc
            try:
                cur = raw.cursor()
                cur.execute(sql.format(after=int(after)))
                rows = cur.fetchall()
                cur.close()
                raw.rollback()
            except Exception as exc:  # a driver error (not wrapped by SQLAlchemy on a raw connection)
                raise self._read_failure(exc, after) from exc
            finally:
                raw.close()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]
            if type(last) is not int:  # keyset paging needs an integer seq; replay names the bad row
                return
            after = last

    def _read_failure(self, exc: Exception, after: int) -> EngineError:
        """A failed read is damage (JournalCorrupt) when the journal table is gone or is not the table
        the code knows, or the file is not a database; otherwise the database is unavailable."""
        problem = self.schema_problem()
        if problem is not None:
            return JournalCorrupt(0 if problem.startswith("no journal table") else after + 1, problem)
        return JournalUnavailable(f"journal read failed: {type(exc).__name__}: {exc}"[:300])

    def schema_problem(self) -> str | None:
        """None when the journal table exists with every column the code reads, else what is wrong."""
        try:
            with self._reader.connect() as conn:
                insp = inspect(conn)
                if not insp.has_table("journal"):
                    return "no journal table"
                have = {c["name"]: c["type"] for c in insp.get_columns("journal")}
        except Exception as exc:
            orig = getattr(exc, "orig", exc)
            if "not a database" in str(orig):
                return f"no journal table: the file is not a readable SQLite database ({orig})"[:300]
            return None
        missing = [c for c in RAW_COLUMNS if c not in have]
        if missing:
            return f"journal table lacks columns {', '.join(missing)}"
        for name in ("seq", "version", "schema_version"):
            if not isinstance(have[name], Integer):
                return f"journal column {name} is {have[name]}, not an integer"
        return None

    def close(self) -> None:
        with self._wlock:
            if self._wconn is not None:
                self._wconn.close()
                self._wconn = None
        self._writer.dispose()
        if self._reader is not self._writer:
            self._reader.dispose()
