"""engine.checkpoint: the signed checkpoint log, its comparison with a journal head, the Checkpointer."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.checkpoint import (
    PUBLIC_KEY_FILE,
    Checkpoint,
    CheckpointCorrupt,
    Checkpointer,
    CheckpointLog,
    load_or_create_key,
    load_public_key,
)
from engine.errors import JournalCorrupt


def h(n: int) -> str:
    return f"{n:064x}"


def chain(n: int, rewritten_from: int | None = None) -> dict[int, str]:
    """A journal's hash at each seq 1..n; from `rewritten_from` on, different hashes."""
    return {
        s: (h(s) if rewritten_from is None or s < rewritten_from else h(10_000 + s)) for s in range(1, n + 1)
    }


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def cplog(tmp_path: Path, key: Ed25519PrivateKey) -> CheckpointLog:
    return CheckpointLog(tmp_path / "checkpoints.jsonl", private_key=key)


def test_key_is_created_owner_only_with_its_public_key_alongside(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "data")
    assert stat.S_IMODE((tmp_path / "data" / "checkpoint_key.pem").stat().st_mode) == 0o600
    public = load_public_key(tmp_path / "data" / PUBLIC_KEY_FILE)
    assert public.public_bytes_raw() == key.public_key().public_bytes_raw()
    again = load_or_create_key(tmp_path / "data")  # the second start reads it back
    assert again.private_bytes_raw() == key.private_bytes_raw()


def test_appended_checkpoints_read_back_with_the_public_key(
    cplog: CheckpointLog, key: Ed25519PrivateKey
) -> None:
    assert cplog.latest() is None
    cplog.append(3, h(3), "2026-12-01T10:00:00.000000Z")
    cplog.append(7, h(7), "2026-12-01T10:00:01.000000Z")
    reader = CheckpointLog(cplog.path, public_key=key.public_key())
    assert reader.latest() == Checkpoint(7, h(7), "2026-12-01T10:00:01.000000Z", "head", 2)
    assert [c.seq for c in reader.checkpoints()] == [3, 7]
    assert stat.S_IMODE(cplog.path.stat().st_mode) == 0o600
    with pytest.raises(ValueError, match="public key only"):
        reader.append(8, h(8))


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.parametrize(
    ("damage", "line", "fragment"),
    [
        ("edit the seq", 2, "signature does not verify"),
        ("not json", 2, "not a checkpoint line"),
        ("drop a middle line", 2, "does not follow the line before it"),
        ("swap two lines", 1, "does not follow the line before it"),
        ("another key", 3, "signature does not verify"),
        ("garble a middle signature", 2, "signature does not verify"),
    ],
)
def test_a_bad_line_is_an_error_naming_the_line(
    cplog: CheckpointLog, key: Ed25519PrivateKey, damage: str, line: int, fragment: str
) -> None:
    for s in (1, 2, 3):
        cplog.append(s, h(s))
    lines = _lines(cplog.path)
    if damage == "edit the seq":
        obj = json.loads(lines[1])
        obj["body"]["seq"] = 99
        lines[1] = json.dumps(obj)
    elif damage == "not json":
        lines[1] = "{oops"
    elif damage == "drop a middle line":
        del lines[1]
    elif damage == "garble a middle signature":
        obj = json.loads(lines[1])
        obj["sig"] = obj["sig"][::-1]
        lines[1] = json.dumps(obj)
    elif damage == "swap two lines":
        lines[0], lines[1] = lines[1], lines[0]
    else:
        other = CheckpointLog(cplog.path.with_name("other.jsonl"), private_key=Ed25519PrivateKey.generate())
        for s in (1, 2, 3):
            other.append(s, h(s))
        lines[2] = _lines(other.path)[2]
    cplog.path.write_text("\n".join(lines) + "\n")
    reader = CheckpointLog(cplog.path, public_key=key.public_key())
    with pytest.raises(CheckpointCorrupt, match=f"line {line}: {fragment}") as info:
        reader.latest()
    assert info.value.line == line
    with pytest.raises(CheckpointCorrupt, match=f"line {line}: {fragment}"):
        reader.checkpoints(every_signature=True)
    assert isinstance(info.value, JournalCorrupt)  # start-up refuses, the API answers journal_corrupt


def test_a_torn_last_line_is_ignored_and_cut_before_the_next_append(cplog: CheckpointLog) -> None:
    cplog.append(1, h(1))
    with cplog.path.open("a") as fh:
        fh.write('{"body": {"v": 1, "ki')  # a crash mid-append
    fresh = CheckpointLog(cplog.path, private_key=cplog._private)
    assert fresh.latest() is not None
    assert fresh.latest().seq == 1  # type: ignore[union-attr]
    fresh.append(2, h(2))
    assert [c.seq for c in fresh.checkpoints()] == [1, 2]


def _lookup(hashes: dict[int, str]) -> object:
    return hashes.get


def test_compare_ok_when_the_journal_reaches_the_checkpoint(cplog: CheckpointLog) -> None:
    cplog.append(5, h(5))
    hashes = chain(8)
    assert cplog.compare((5, h(5)), hashes.get) is None
    assert cplog.compare((8, h(8)), hashes.get) is None  # rows after the checkpoint are fine
    cplog.check((8, h(8)), hashes.get)


def test_compare_reports_a_truncated_tail(cplog: CheckpointLog) -> None:
    cplog.append(5, h(5))
    cplog.append(9, h(9))
    problem = cplog.compare((6, h(6)), chain(6).get)
    assert problem is not None
    assert (problem.seq, problem.kind) == (7, "truncated")
    assert problem.problem.startswith("journal ends at seq 6, checkpoint at seq 9: rows 7..9 missing")
    with pytest.raises(JournalCorrupt, match="seq 7: journal ends at seq 6"):
        cplog.check((6, h(6)), chain(6).get)
    empty = cplog.compare((0, "0" * 64), {}.get)
    assert empty is not None
    assert "rows 1..9 missing" in empty.problem


def test_compare_reports_the_earliest_checkpoint_a_rewritten_chain_contradicts(cplog: CheckpointLog) -> None:
    for s in (2, 4, 6, 8):
        cplog.append(s, h(s))
    rewritten = chain(9, rewritten_from=5)
    problem = cplog.compare((9, rewritten[9]), rewritten.get)
    assert problem is not None
    assert (problem.seq, problem.kind) == (6, "rewritten")
    assert "chain was rewritten after seq 4" in problem.problem
    # rewritten and cut short: the rewrite is the earlier finding
    problem = cplog.compare((7, rewritten[7]), rewritten.get)
    assert problem is not None
    assert (problem.seq, problem.kind) == (6, "rewritten")


def test_an_accepted_loss_is_the_new_baseline(cplog: CheckpointLog) -> None:
    cplog.append(9, h(9))
    assert cplog.compare((6, h(6)), chain(6).get) is not None
    cplog.append(6, h(6), kind="accepted_loss", old_seq=9, old_hash=h(9), reason="restored backup")
    assert cplog.compare((6, h(6)), chain(6).get) is None
    latest = cplog.latest()
    assert latest is not None
    assert (latest.kind, latest.old_seq, latest.reason) == ("accepted_loss", 9, "restored backup")
    cplog.append(8, h(8))
    assert cplog.compare((8, h(8)), chain(8).get) is None
    assert cplog.compare((7, h(7)), chain(7).get) is not None


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_checkpointer_writes_at_most_once_per_interval_and_at_close(cplog: CheckpointLog) -> None:
    threads: list[str] = []
    real_append = cplog.append

    def append(*args: object, **kw: object) -> Checkpoint:
        threads.append(threading.current_thread().name)
        return real_append(*args, **kw)  # type: ignore[arg-type]

    cplog.append = append  # type: ignore[method-assign]
    cp = Checkpointer(cplog, interval_s=0.2)
    for s in range(1, 201):  # a burst of commit batches
        cp.note(s, h(s))
        if s % 50 == 0:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    during = cp.writes
    assert 1 <= during <= 3  # ~0.25 s of burst at one write per 0.2 s, not 200
    for s in range(201, 211):
        cp.note(s, h(s))
    await cp.close()
    latest = cplog.latest()
    assert latest is not None
    assert latest.seq == 210  # the final head is written at close
    assert threading.main_thread().name not in threads  # never on the event loop's thread
    cp.note(300, h(300))  # after close: ignored
    assert cplog.latest().seq == 210  # type: ignore[union-attr]


async def test_checkpointer_survives_a_failing_disk(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    cp = Checkpointer(CheckpointLog(blocked / "checkpoints.jsonl", private_key=key), interval_s=0.01)
    cp.note(1, h(1))
    await asyncio.sleep(0.05)
    await cp.close()
    assert cp.errors >= 1
    assert cp.writes == 0
    assert cp.last_error is not None
