"""A standby that takes the writer lease but cannot open the journal (a transient failure: the server's
connection limit, a restart) gives the lease up — it fences itself and asks the process to exit, so
another standby can take over — instead of holding it and answering 503 for good. A journal that does
not verify is different: every standby would find the same damage, so the lease stays and the 503 names it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.bootstrap import build_runtime
from engine.errors import JournalCorrupt
from engine.persistence.sql_journal import JournalUnavailable
from tests.e2e.server import paper_settings


class HeldLease:
    """The runtime's view of a WriterLease that is always ours."""

    def __init__(self) -> None:
        self.state = "ACTIVE"
        self.closed = False

    def try_acquire(self) -> bool:
        return True

    def check(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "schema": "acct_a"}

    def close(self) -> None:
        self.closed = True


def _runtime(tmp_path: Path, lease: HeldLease) -> Any:
    runtime = build_runtime(paper_settings(tmp_path / "data"))
    runtime.lease = lease
    exits: list[str] = []
    runtime.on_fenced = lambda: exits.append("exit")
    return runtime, exits


async def test_a_writer_that_cannot_prepare_the_journal_gives_the_lease_up(tmp_path: Path) -> None:
    lease = HeldLease()
    runtime, exits = _runtime(tmp_path, lease)

    def too_many_connections() -> None:
        raise ConnectionError("FATAL: sorry, too many clients already")

    runtime.prepare_journal = too_many_connections
    await runtime.start()
    try:
        assert runtime.fenced
        assert exits == ["exit"]
        assert runtime.start_error is not None
        assert runtime.start_error.reason == "lease_lost"
        assert "cannot be prepared (ConnectionError)" in str(runtime.start_error)
    finally:
        await runtime.stop()
    assert lease.closed  # the session, and so the lock, is handed back at stop


@pytest.mark.parametrize(
    ("failure", "named"),
    [
        (JournalUnavailable("journal read failed: server closed the connection"), "cannot be opened"),
        # Was: an exception outside EngineError (a bug) ended the writer-start task, so the engine held the
        # lease without ever serving (503 for good) and the failure reached nobody
        (TypeError("unsupported operand"), "cannot be opened (TypeError)"),
    ],
)
async def test_a_writer_that_cannot_open_the_journal_gives_the_lease_up(
    tmp_path: Path, failure: Exception, named: str
) -> None:
    lease = HeldLease()
    runtime, exits = _runtime(tmp_path, lease)

    async def failing() -> None:
        raise failure

    runtime.engine.open = failing
    await runtime.start()
    try:
        assert runtime.fenced
        assert exits == ["exit"]
        assert named in str(runtime.start_error)
    finally:
        await runtime.stop()


async def test_a_journal_that_does_not_verify_keeps_the_lease_and_names_the_damage(tmp_path: Path) -> None:
    lease = HeldLease()
    runtime, exits = _runtime(tmp_path, lease)

    async def corrupt() -> None:
        raise JournalCorrupt(7, "hash mismatch")

    runtime.engine.open = corrupt
    await runtime.start()
    try:
        assert not runtime.fenced
        assert exits == []
        assert isinstance(runtime.start_error, JournalCorrupt)
    finally:
        await runtime.stop()
