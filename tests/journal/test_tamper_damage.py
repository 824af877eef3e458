"""Any damage to the journal is JournalCorrupt naming a seq (seq 0: no journal at all), from scan and
replay alike, on SQLite and PostgreSQL; `propbot journal verify` exits 1 "BROKEN at seq N" for each.
A payload with NaN/Infinity never reaches the journal."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api.cli import main
from engine.errors import JournalCorrupt
from engine.journal import NewEntry
from engine.persistence.sql_journal import SqlJournal
from engine.replay import replay
from tests.journal import attacker
from tests.journal.attacker import Rows
from tests.journal.test_sql_journal import entry


def seed(url: str) -> None:
    j = SqlJournal(url)
    j.append([entry("a", 1)])
    j.append([entry("a", 2, "preflight", "NEW", "PREFLIGHT")])
    j.append([NewEntry("audit", "x-1", 1, "api.live.ping", None, None, {"n": 1}, "ops")])
    j.append([entry("b", 1)])
    j.close()


def at(index: int, column: int, value: object) -> Callable[[Rows], Rows]:
    def mutate(rows: Rows) -> Rows:
        rows[index][column] = value
        return rows

    return mutate


# (name, mutation of the row list, hashes recomputed from row index, expected seq, problem fragment)
REWRITES = {
    "invalid JSON payload": (at(1, 7, '{"mode": '), 1, 2, "payload is not valid JSON"),
    "payload not an object": (at(2, 7, "[1,2]"), 2, 3, "payload is a JSON list"),
    "schema_version 0": (at(1, 10, 0), 1, 2, "unknown schema_version 0"),
    "schema_version from the future": (at(2, 10, 99), 2, 3, "unknown schema_version 99"),
    "created_at goes backwards": (at(2, 11, "2001-01-01T00:00:00.000000Z"), 2, 3, "is before the previous"),
    "created_at not a timestamp": (at(0, 11, "yesterday"), 0, 1, "is not a timestamp"),
    "a row deleted, the rest rehashed": (lambda rows: rows[:1] + rows[2:], 1, 3, "seq gap: expected 2"),
}


def read(url: str) -> None:
    j = SqlJournal(url)
    try:
        replay(j.scan())
    finally:
        j.close()


def assert_broken(url: str, seq: int, fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(JournalCorrupt) as info:
        read(url)
    assert info.value.seq == seq
    assert fragment in info.value.problem
    capsys.readouterr()
    assert main(["journal", "verify", "--db", url]) == 1
    out = capsys.readouterr().out
    assert f"BROKEN at seq {seq}: " in out
    assert fragment in out


@pytest.mark.parametrize("kind", list(REWRITES))
def test_a_consistent_rewrite_that_damages_a_row_is_corrupt_at_that_row(
    journal_url: str, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    mutate, start, seq, fragment = REWRITES[kind]
    seed(journal_url)
    attacker.rewrite(journal_url, mutate, recompute_from=start)
    assert_broken(journal_url, seq, fragment, capsys)


def test_a_dropped_journal_table_is_corrupt_at_seq_0(
    journal_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(journal_url)
    attacker.execute(journal_url, "DROP TABLE journal")
    assert_broken(journal_url, 0, "no journal table", capsys)


def test_a_null_in_a_required_column_is_corrupt_at_that_row(
    journal_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(journal_url)
    if journal_url.startswith("sqlite"):
        # SQLite cannot drop NOT NULL: the attacker swaps in a copy of the table without constraints
        attacker.execute(
            journal_url,
            "CREATE TABLE loose AS SELECT * FROM journal",
            "DROP TABLE journal",
            "ALTER TABLE loose RENAME TO journal",
        )
    else:
        attacker.execute(journal_url, "ALTER TABLE journal ALTER COLUMN actor DROP NOT NULL")
    attacker.rewrite(journal_url, at(2, 8, None), recompute_from=None)
    assert_broken(journal_url, 3, "NULL in column actor", capsys)


def test_a_non_integer_seq_is_corrupt(journal_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(journal_url)
    if journal_url.startswith("sqlite"):
        attacker.execute(
            journal_url,
            "CREATE TABLE loose AS SELECT * FROM journal",
            "DROP TABLE journal",
            "ALTER TABLE loose RENAME TO journal",
            "UPDATE journal SET seq = 'four' WHERE seq = 4",
        )
        assert_broken(journal_url, 4, "seq 'four' is not an integer", capsys)
    else:
        attacker.execute(journal_url, "ALTER TABLE journal ALTER COLUMN seq TYPE text")
        assert_broken(journal_url, 1, "journal column seq is TEXT, not an integer", capsys)


def test_a_file_that_is_not_a_database_is_corrupt_at_seq_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"this is not SQLite" * 100)
    assert_broken(f"sqlite:///{path}", 0, "not a readable SQLite database", capsys)


def test_raw_rows_with_wrong_shapes_are_corrupt_not_crashes() -> None:
    j_rows = [
        (1, "audit", "x", 1, "t", None, None, "{}", "ops", "", 1, "2026-01-01T00:00:00.000000Z"),  # short
    ]
    with pytest.raises(JournalCorrupt, match="seq 1: row has 12 columns"):
        replay(j_rows)  # type: ignore[arg-type]
    with pytest.raises(JournalCorrupt, match="seq 1: NULL in column stream"):
        replay([(1, None, "x", 1, "t", None, None, "{}", "ops", "", 1, "2026-01-01T00:00:00.000000Z",
                 "0" * 64, "f" * 64, None)])  # type: ignore[list-item]  # fmt: skip


def test_a_clock_stepped_back_never_makes_created_at_go_backwards(journal_url: str) -> None:
    times = iter([datetime(2026, 5, 1, 12, tzinfo=UTC), datetime(2026, 5, 1, 11, tzinfo=UTC)])
    j = SqlJournal(journal_url, now=lambda: next(times))
    j.append([entry("a", 1)])
    j.close()
    j = SqlJournal(journal_url, now=lambda: next(times))  # a new process reads the last time back
    (rec,) = j.append([entry("b", 1)])
    assert rec.created_at == "2026-05-01T12:00:00.000000Z"
    assert replay(j.scan()).rows == 2
    j.close()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_payload_with_a_non_finite_number_is_refused_before_the_journal(
    journal: SqlJournal, bad: float
) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        NewEntry("audit", "x-1", 1, "api.live.ping", None, None, {"price": {"p": bad}}, "ops")
    assert journal.count() == 0
    journal.append([NewEntry("audit", "x-1", 1, "api.live.ping", None, None, {"p": 1.5}, "ops")])
    assert replay(journal.scan()).rows == 1
