"""Signed checkpoints catch what the chain alone cannot: a truncated tail, a lost -wal file, a
consistent rewrite. Start-up refuses (JournalCorrupt naming the first missing or differing seq) and
`propbot journal verify` says BROKEN; `propbot journal accept-loss` records an accepted loss."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.cli import main
from engine.checkpoint import PUBLIC_KEY_FILE, CheckpointLog, engine_log
from engine.config import EngineSettings
from engine.errors import JournalCorrupt
from engine.journal import NewEntry
from engine.persistence.migrate import upgrade
from engine.persistence.sql_journal import SqlJournal
from engine.replay import replay
from engine.runtime import Engine
from tests.fakes import FakeExchange, FrozenClock
from tests.journal import attacker


def audit(n: int) -> NewEntry:
    return NewEntry("audit", f"ping-{n}", 1, "api.live.ping", None, None, {"n": n}, "ops")


def write(url: str, first: int, last: int) -> tuple[int, str]:
    j = SqlJournal(url)
    for n in range(first, last + 1):
        j.append([audit(n)])
    head = j.head()
    j.close()
    return head


def engine_for(url: str, cplog: CheckpointLog) -> Engine:
    settings = EngineSettings(profile="testnet", symbols=("BTCUSDT",))
    return Engine(
        SqlJournal(url), FakeExchange(), settings, FrozenClock(), checkpoints=cplog, session_id="testnet"
    )


async def start_fails(url: str, cplog: CheckpointLog) -> JournalCorrupt:
    eng = engine_for(url, cplog)
    try:
        with pytest.raises(JournalCorrupt) as info:
            await eng.start()
    finally:
        await eng.stop()
        eng.journal.close()
    return info.value


async def start_ok(url: str, cplog: CheckpointLog) -> None:
    eng = engine_for(url, cplog)
    try:
        await eng.start()
        assert eng.ready
    finally:
        await eng.stop()
        eng.journal.close()


def cli(*argv: str) -> int:
    return main(["journal", *argv])


@pytest.fixture
def cplog(tmp_path: Path) -> CheckpointLog:
    return engine_log(tmp_path / "keys", tmp_path / "keys" / "checkpoints.jsonl")


def verify_args(url: str, cplog: CheckpointLog) -> list[str]:
    return ["verify", "--db", url, "--checkpoints", str(cplog.path),
            "--checkpoint-key", str(cplog.path.parent / PUBLIC_KEY_FILE)]  # fmt: skip


async def test_a_journal_that_reaches_its_checkpoint_starts(journal_url: str, cplog: CheckpointLog) -> None:
    cplog.append(*write(journal_url, 1, 5))
    write(journal_url, 6, 7)  # rows after the newest checkpoint: not yet checkpointed, fine
    await start_ok(journal_url, cplog)
    assert cli(*verify_args(journal_url, cplog)) == 0


async def test_a_truncated_tail_is_refused_naming_the_first_missing_seq(
    journal_url: str, cplog: CheckpointLog, capsys: pytest.CaptureFixture[str]
) -> None:
    cplog.append(*write(journal_url, 1, 3))
    cplog.append(*write(journal_url, 4, 6))
    attacker.execute(journal_url, "DELETE FROM journal WHERE seq > 4")
    j = SqlJournal(journal_url)
    assert replay(j.scan()).rows == 4  # the chain alone still verifies: that was the hole
    j.close()
    exc = await start_fails(journal_url, cplog)
    assert exc.seq == 5
    assert exc.problem.startswith("journal ends at seq 4, checkpoint at seq 6: rows 5..6 missing")
    capsys.readouterr()
    assert cli(*verify_args(journal_url, cplog)) == 1
    assert "journal BROKEN at seq 5: journal ends at seq 4, checkpoint at seq 6" in capsys.readouterr().out


async def test_a_consistent_rewrite_is_refused_at_the_checkpoint_it_contradicts(
    journal_url: str, cplog: CheckpointLog, capsys: pytest.CaptureFixture[str]
) -> None:
    cplog.append(*write(journal_url, 1, 2))
    cplog.append(*write(journal_url, 3, 4))
    cplog.append(*write(journal_url, 5, 6))

    def mallory(rows: attacker.Rows) -> attacker.Rows:
        rows[2][8] = "mallory"  # seq 3's actor
        return rows

    attacker.rewrite(journal_url, mallory, recompute_from=2)
    j = SqlJournal(journal_url)
    assert replay(j.scan()).rows == 6
    j.close()
    exc = await start_fails(journal_url, cplog)
    assert exc.seq == 4
    assert "hash at seq 4 differs from the checkpoint" in exc.problem
    assert "rewritten after seq 2" in exc.problem
    capsys.readouterr()
    assert cli(*verify_args(journal_url, cplog)) == 1
    assert "journal BROKEN at seq 4: hash at seq 4 differs" in capsys.readouterr().out


async def test_a_backup_copied_without_its_wal_file_is_refused(tmp_path: Path, cplog: CheckpointLog) -> None:
    live = tmp_path / "live" / "journal.db"
    url = f"sqlite:///{live}"
    upgrade(url)
    j = SqlJournal(url)  # WAL mode: committed rows sit in journal.db-wal until a checkpoint
    for n in range(1, 66):
        j.append([audit(n)])
    cplog.append(*j.head())
    copy = tmp_path / "copy" / "journal.db"
    copy.parent.mkdir()
    shutil.copy(live, copy)  # the careless backup, taken while the engine runs: no -wal
    j.close()
    copy_url = f"sqlite:///{copy}"
    check = SqlJournal(copy_url)
    lost = replay(check.scan())
    check.close()
    assert lost.rows < 65  # rows were lost, and the copy verifies on its own
    exc = await start_fails(copy_url, cplog)
    assert exc.seq == lost.rows + 1
    assert f"rows {lost.rows + 1}..65 missing" in exc.problem


async def test_accept_loss_signs_the_journal_as_it_is_and_start_proceeds(
    journal_url: str, cplog: CheckpointLog, capsys: pytest.CaptureFixture[str]
) -> None:
    cplog.append(*write(journal_url, 1, 6))
    attacker.execute(journal_url, "DELETE FROM journal WHERE seq > 4")
    key = str(cplog.path.parent / "checkpoint_key.pem")
    args = ["accept-loss", "--db", journal_url, "--checkpoints", str(cplog.path), "--key", key]
    assert main(["journal", *args]) == 2  # --reason is required
    capsys.readouterr()
    assert cli(*args, "--reason", "restored the 09:00 backup, incident 42") == 0
    out = capsys.readouterr().out
    assert "was: journal ends at seq 4, checkpoint at seq 6" in out
    assert "accepted: journal at seq 4" in out
    latest = cplog.latest()
    assert latest is not None
    assert (latest.kind, latest.seq, latest.old_seq) == ("accepted_loss", 4, 6)
    assert latest.reason == "restored the 09:00 backup, incident 42"
    await start_ok(journal_url, cplog)
    assert cli(*verify_args(journal_url, cplog)) == 0
    assert cli(*args, "--reason", "again") == 0  # nothing left to accept: no second line
    assert "nothing to accept" in capsys.readouterr().out
    # one accepted loss only (the engine itself appends head lines as it commits)
    assert [c.kind for c in cplog.checkpoints()].count("accepted_loss") == 1


async def test_a_checkpoint_log_signed_by_another_key_is_refused(journal_url: str, tmp_path: Path) -> None:
    head = write(journal_url, 1, 2)
    forged = CheckpointLog(tmp_path / "keys" / "checkpoints.jsonl", private_key=Ed25519PrivateKey.generate())
    forged.append(*head)
    ours = engine_log(tmp_path / "keys", forged.path)
    exc = await start_fails(journal_url, ours)
    assert exc.seq == 0
    assert "line 1: signature does not verify" in exc.problem
