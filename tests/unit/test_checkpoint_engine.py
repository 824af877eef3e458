"""The Checkpointer inside a running engine (the group-commit writer notes each commit batch's head and
closes it after the last): the log follows the head, a restart checks it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.checkpoint import Checkpointer, engine_log
from engine.config import EngineSettings
from engine.errors import JournalCorrupt
from engine.persistence.migrate import upgrade
from engine.persistence.sql_journal import SqlJournal
from engine.runtime import Engine
from tests.fakes import FakeExchange, FrozenClock
from tests.journal import attacker


def engine(url: str, data_dir: Path) -> tuple[Engine, Checkpointer]:
    """An engine with its checkpoint log, as the composition root builds it: the writer notes the head
    after each commit batch and closes the checkpointer after its last commit."""
    settings = EngineSettings(profile="testnet", symbols=("BTCUSDT",))
    eng = Engine(
        SqlJournal(url),
        FakeExchange(),
        settings,
        FrozenClock(),
        checkpoints=engine_log(data_dir),
        session_id="testnet",
    )
    assert eng.writer.checkpointer is not None
    return eng, eng.writer.checkpointer


async def test_checkpoints_follow_the_engine_and_a_restart_checks_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    upgrade(url)
    eng, checkpointer = engine(url, tmp_path)
    await eng.start()
    for n in range(40):
        await eng.audit("ops", "api.live.ping", {"n": n})
    await eng.stop()
    await checkpointer.close()  # after the writer's last commit
    head = eng.journal.head()  # type: ignore[attr-defined]
    eng.journal.close()
    latest = checkpointer.log.latest()
    assert latest is not None
    assert (latest.seq, latest.hash) == head
    assert checkpointer.writes < 41  # not one file append per commit

    again, cp2 = engine(url, tmp_path)
    await again.start()  # reaches its checkpoint
    await again.stop()
    await cp2.close()
    again.journal.close()

    attacker.execute(url, f"DELETE FROM journal WHERE seq > {head[0] - 5}")
    broken, cp3 = engine(url, tmp_path)
    with pytest.raises(JournalCorrupt) as info:
        await broken.start()
    assert info.value.seq == head[0] - 4
    await broken.stop()
    await cp3.close()
    broken.journal.close()


async def test_note_costs_next_to_nothing_on_the_event_loop(tmp_path: Path) -> None:
    checkpointer = Checkpointer(engine_log(tmp_path), interval_s=10)
    t = time.perf_counter()
    for seq in range(1, 100_001):
        checkpointer.note(seq, "0" * 64)
    per_call = (time.perf_counter() - t) / 100_000
    await checkpointer.close()
    assert per_call < 20e-6  # a tuple store and a done() check; the file append is elsewhere
    assert checkpointer.writes == 1  # the loop never ran the task: only close's write, of the last head
    latest = checkpointer.log.latest()
    assert latest is not None
    assert latest.seq == 100_000
