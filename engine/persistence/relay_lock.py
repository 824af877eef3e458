"""One outbox relay per journal source: the lock a relay holds while it publishes (docs/scale-out.md).

A second relay started for the same source is a standby: it tries the lock every few tenths of a
second and starts publishing when the holder is gone (died, stopped, lost its database session).
- PostgreSQL: a session-level advisory lock on a dedicated connection, the writer lease's mechanism
  (engine.persistence.lease.WriterLease) under the key SHA-256("propbot.relay:" + source), so it dies
  with the holder's session; the holder checks it every 0.5 s.
- SQLite: an exclusive flock() on `<journal file>.relay-<source>.lock` beside the database; the kernel
  releases it when the holder's process dies, SIGKILL included. The file holds the holder's id, pid and
  start for the standby to show. The holder checks that the path still names its locked file (a file
  deleted and created again would let a second relay lock the new one).

The lock keeps two relays of one source from publishing side by side; correctness does not rest on it:
a relay that lost the lock publishes for at most one check interval before it stops, and what two
relays publish twice is dropped by the broker's duplicate window or the consumers' SeqGate.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import make_url

from engine.persistence.database import is_sqlite
from engine.persistence.lease import WriterLease, stable_key


@dataclass(frozen=True, slots=True)
class LockHolder:
    relay_id: str | None
    pid: int | None
    since: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"relay_id": self.relay_id, "pid": self.pid, "since": self.since}


class RelayLock(Protocol):
    """Blocking methods: call them off the event loop."""

    holder: LockHolder | None  # who holds it, as last seen by a standby (None: unknown, or nobody)

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True once held."""
        ...

    def check(self) -> bool:
        """The holder's probe: still held? False once lost (the lock is then closed)."""
        ...

    def close(self) -> None:
        """Release it (a standby takes over at its next try)."""
        ...


def relay_lock_key(source: str) -> int:
    return stable_key("propbot.relay", source)


def open_relay_lock(db_url: str, source: str, relay_id: str) -> RelayLock:
    if is_sqlite(db_url):
        path = make_url(db_url).database
        if not path or path == ":memory:":
            raise ValueError("an in-memory SQLite journal cannot be relayed: no other process can read it")
        return FileRelayLock(Path(f"{path}.relay-{source}.lock"), relay_id)
    return PgRelayLock(db_url, source, relay_id)


class PgRelayLock:
    def __init__(self, db_url: str, source: str, relay_id: str) -> None:
        self._lease = WriterLease(
            db_url, source, relay_id, key=relay_lock_key(source), label=f"relay lock of source {source}"
        )
        self.holder: LockHolder | None = None

    def try_acquire(self) -> bool:
        if self._lease.try_acquire():
            self.holder = None
            return True
        seen = self._lease.holder
        self.holder = None if seen is None else LockHolder(seen.engine_id, seen.pid, seen.since)
        return False

    def check(self) -> bool:
        return self._lease.check()

    def close(self) -> None:
        self._lease.close()


class FileRelayLock:
    def __init__(self, path: Path, relay_id: str) -> None:
        self.path = path
        self.relay_id = relay_id
        self.holder: LockHolder | None = None
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self.holder = self._read_holder()
            return False
        except BaseException:
            os.close(fd)
            raise
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        record = json.dumps({"relay_id": self.relay_id, "pid": os.getpid(), "since": since}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd, self.holder = fd, None
        return True

    def _read_holder(self) -> LockHolder | None:
        try:
            data = json.loads(self.path.read_bytes() or b"{}")
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        pid = data.get("pid")
        return LockHolder(data.get("relay_id"), pid if isinstance(pid, int) else None, data.get("since"))

    def check(self) -> bool:
        if self._fd is None:
            return False
        try:
            held = os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except OSError:  # the file is gone: another relay may create and lock a new one
            held = False
        if not held:
            self.close()
        return held

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the descriptor releases the flock
