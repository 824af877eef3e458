"""One writer per account on PostgreSQL: a session-level advisory lock on one connection, which is also
the only connection the journal writes on (docs/adr/0007-one-chain-per-account.md).

- `try_acquire()` runs `pg_try_advisory_lock(key)` on the lease connection; the engine that gets it is
  the account's writer, the others are standbys and poll again.
- The lock belongs to that PostgreSQL session and is released only when the session ends (the process
  died, the connection broke, the server restarted). Because the journal appends on the same session
  (`SqlJournal(lease=...)`), no append can commit after the lock is gone: the transaction dies with its
  session. A lost lease connection is never reopened for writing; the lease is LOST for good and the
  process must start again (as a standby).
- Each append also checks, inside its transaction, that this backend holds the lock (`held_sql`): a
  pooler in transaction mode between the engine and PostgreSQL would hand statements to other sessions,
  and that must refuse appends rather than write without the lock.

Key: the first 8 bytes of SHA-256("propbot.writer:" + schema), as a signed 64-bit integer, so every
process derives the same key from the account's journal schema. Two schemas whose keys collide
(probability about n²/2⁶⁵ for n accounts) share one lease: one of them would wait as a standby while the
other runs — slower, never two writers. SQLite has no lease: one engine per journal file.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from engine.errors import EngineError
from engine.persistence.database import pg_connect_args

log = logging.getLogger(__name__)

APP_PREFIX = "propbot:"  # application_name of a lease session: names the holder to standbys


class LeaseLost(EngineError):
    """This process no longer holds (or never held) the account's writer lease: nothing is appended."""

    reason = "lease_lost"


def stable_key(namespace: str, name: str) -> int:
    """A signed 64-bit advisory-lock key, the same in every process and Python version."""
    digest = hashlib.sha256(f"{namespace}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lease_key(schema: str) -> int:
    return stable_key("propbot.writer", schema)


def _split(key: int) -> tuple[int, int]:
    """(classid, objid) as pg_locks shows a bigint advisory key (objsubid 1)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the lease, as far as pg_stat_activity lets this role see."""

    engine_id: str | None
    pid: int
    since: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"engine_id": self.engine_id, "pid": self.pid, "since": self.since}


class WriterLease:
    """The account's writer lease. Blocking methods: call them off the event loop (asyncio.to_thread)."""

    STANDBY, ACTIVE, LOST = "STANDBY", "ACTIVE", "LOST"

    def __init__(
        self, url: str, schema: str, engine_id: str, *, key: int | None = None, label: str | None = None
    ) -> None:
        """`key` and `label` (for the log) default to the account's writer lease of `schema`; another
        exclusive role takes its own (the outbox relay's lock of a source: engine.persistence.relay_lock)."""
        self.schema = schema
        self.engine_id = engine_id
        self.key = lease_key(schema) if key is None else key
        self.label = label or f"writer lease for schema {schema}"
        classid, objid = _split(self.key)
        self._where = f"locktype = 'advisory' AND classid = {classid} AND objid = {objid} AND objsubid = 1"
        self._holder_sql = (
            "SELECT l.pid, a.application_name, a.backend_start FROM pg_locks l "
            "LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            f"AND l.classid = {classid} AND l.objid = {objid} AND l.objsubid = 1 AND l.granted "
            # advisory locks are per database: the same key held in another database is not our holder
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1"
        )
        self._engine = create_engine(
            url,
            poolclass=NullPool,
            connect_args={"application_name": f"{APP_PREFIX}{engine_id}"[:63], **pg_connect_args(url)},
        )
        self._conn: Connection | None = None
        # Serialises the journal's writer thread and the liveness checks on the one connection
        self.lock = threading.RLock()
        self.state = self.STANDBY
        self.backend_pid: int | None = None
        self.acquired_at: float | None = None
        self.lost_reason: str | None = None
        self.holder: Holder | None = None
        self.previous_holder: Holder | None = None  # the last holder a standby saw before taking over
        self.last_error: str | None = None
        self.polls = 0

    # -- the standby's side ----------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it. True once held; a LOST lease is never taken again."""
        with self.lock:
            if self.state != self.STANDBY:
                return self.state == self.ACTIVE
            self.polls += 1
            try:
                conn = self._connection()
                got = bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({self.key})").scalar())
                if got:
                    self.backend_pid = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() or 0)
                    self.previous_holder, self.holder = self.holder, None
                else:
                    self.holder = self._holder(conn)
                conn.rollback()  # no transaction stays open on the lease session
            except Exception as exc:  # a standby that cannot reach the database just tries again
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                self._drop()
                return False
            self.last_error = None
            if got:
                self.state = self.ACTIVE
                self.acquired_at = time.time()
                log.warning("%s acquired (backend pid %s)", self.label, self.backend_pid)
            return got

    def _holder(self, conn: Connection) -> Holder | None:
        row = conn.exec_driver_sql(self._holder_sql).first()
        if row is None:
            return None
        name = str(row[1]) if row[1] else ""
        engine_id = name.removeprefix(APP_PREFIX) if name.startswith(APP_PREFIX) else None
        return Holder(engine_id, int(row[0]), row[2].isoformat() if row[2] is not None else None)

    # -- the writer's side -----------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """The lease connection for one append transaction, under `lock`.

        Raises:
            LeaseLost: the lease is not held; when the connection fails during the transaction the lease
                becomes LOST (the transaction died with the session) and the driver error propagates.
        """
        with self.lock:
            if self.state != self.ACTIVE or self._conn is None:
                raise LeaseLost(f"this engine does not hold the writer lease of {self.schema} ({self.state})")
            conn = self._conn
            try:
                yield conn
            except Exception as exc:
                if conn.invalidated or conn.closed or _is_disconnect(exc):
                    self._lose(f"the lease connection failed during an append: {type(exc).__name__}")
                raise

    def held_sql(self) -> str:
        """A scalar query, true when this backend holds the lease (run inside each append)."""
        return f"SELECT EXISTS (SELECT 1 FROM pg_locks WHERE {self._where} AND pid = pg_backend_pid() AND granted)"

    def check(self) -> bool:
        """The active engine's liveness probe: is the lease session alive and still holding the lock?
        False (and LOST) otherwise."""
        with self.lock:
            if self.state != self.ACTIVE or self._conn is None:
                return False
            try:
                held = bool(self._conn.exec_driver_sql(self.held_sql()).scalar())
                self._conn.rollback()
            except Exception as exc:
                self._lose(f"the lease connection failed: {type(exc).__name__}: {exc}"[:300])
                return False
            if not held:
                self._lose("the lease session no longer holds the lock")
            return held

    def lose(self, reason: str) -> None:
        with self.lock:
            self._lose(reason)

    def _lose(self, reason: str) -> None:
        if self.state == self.ACTIVE:
            log.error("%s LOST: %s", self.label, reason)
        self.state = self.LOST
        self.lost_reason = self.lost_reason or reason
        self._drop()

    # -- plumbing --------------------------------------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()  # never returned to a pool: the session (and any lock) ends with it
                conn.close()
            except Exception:
                log.debug("closing the lease connection failed", exc_info=True)

    def status(self) -> dict[str, Any]:
        return {
            "role": self.state,
            "engine_id": self.engine_id,
            "schema": self.schema,
            "lease_key": self.key,
            "backend_pid": self.backend_pid,
            "acquired_at": self.acquired_at,
            "holder": self.holder.as_dict() if self.holder else None,
            "previous_holder": self.previous_holder.as_dict() if self.previous_holder else None,
            "lost_reason": self.lost_reason,
            "last_error": self.last_error,
            "polls": self.polls,
        }

    def close(self) -> None:
        """Release the lease by ending its session (a clean stop hands over at once)."""
        with self.lock:
            if self.state == self.ACTIVE:
                self.state = self.LOST
                self.lost_reason = self.lost_reason or "closed"
            self._drop()
        self._engine.dispose()


def _is_disconnect(exc: BaseException) -> bool:
    return bool(getattr(exc, "connection_invalidated", False)) or type(exc).__name__ in (
        "OperationalError",
        "InterfaceError",
    )
