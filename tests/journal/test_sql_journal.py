"""The journal contract, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from engine.errors import JournalCorrupt, VersionConflict
from engine.journal import GENESIS_HASH, JournalQuery, NewEntry
from engine.persistence.lease import stable_key
from engine.persistence.sql_journal import JournalUnavailable, SqlJournal
from engine.replay import replay
from tests.journal import attacker


def entry(
    sid: str, version: int, trigger: str = "create", frm: str | None = None, to: str | None = "NEW"
) -> NewEntry:
    payload = {"request": {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "clientOrderId": sid,
                           "quantity": "0.001"}, "mode": "paper"}  # fmt: skip
    return NewEntry("order", sid, version, trigger, frm, to, payload if trigger == "create" else {}, "tester")


def test_append_chains_rows_and_reads_them_back(journal: SqlJournal) -> None:
    recs = journal.append([entry("a", 1), entry("a", 2, "preflight", "NEW", "PREFLIGHT")])
    assert [r.seq for r in recs] == [1, 2]
    assert recs[0].prev_hash == GENESIS_HASH
    assert recs[1].prev_hash == recs[0].hash
    assert [r.trigger for r in journal.stream("order", "a")] == ["create", "preflight"]
    assert journal.last_seq() == 2
    result = replay(journal.scan())
    assert result.rows == 2
    assert result.open_orders["a"].version == 2


def test_version_conflict_raises_and_writes_nothing(journal: SqlJournal) -> None:
    journal.append([entry("a", 1)])
    with pytest.raises(VersionConflict):
        journal.append([entry("b", 1), entry("a", 1)])  # b would be fine alone: all or nothing
    assert journal.count() == 1
    assert journal.stream("order", "b") == []
    replay(journal.scan())  # the chain is still whole


def test_group_commit_isolates_a_conflicting_group(journal: SqlJournal) -> None:
    journal.append([entry("a", 1)])
    results = journal.append_groups([[entry("b", 1)], [entry("a", 1)], [entry("c", 1)]])
    assert isinstance(results[1], VersionConflict)
    assert [r[0].stream_id for r in (results[0], results[2]) if isinstance(r, list)] == ["b", "c"]
    assert replay(journal.scan()).rows == 3


def test_a_database_failure_on_the_savepoint_path_is_journal_unavailable(
    journal: SqlJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: only the one-transaction path turned the driver's OperationalError into JournalUnavailable; a
    # batch sent down the savepoint path by a version conflict raised it raw (a 500 through the API)
    journal.append([entry("a", 1)])

    def broken(_groups: object) -> None:
        raise OperationalError("SAVEPOINT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(journal, "_append_one_by_one", broken)
    with pytest.raises(JournalUnavailable, match="disk I/O error"):
        journal.append_groups([[entry("b", 1)], [entry("a", 1)]])  # a's conflict sends it down that path


def test_query_filters_and_pagination(journal: SqlJournal) -> None:
    for sid in ("a", "b", "c"):
        journal.append([entry(sid, 1)])
    journal.append([NewEntry("audit", "x-1", 1, "api.live.ping", None, None, {}, "ops")])
    assert [r.stream_id for r in journal.query(JournalQuery(limit=2))] == ["a", "b"]
    assert [r.stream_id for r in journal.query(JournalQuery(after_seq=2))] == ["c", "x-1"]
    assert [r.seq for r in journal.query(JournalQuery(actor="ops"))] == [4]
    assert [r.seq for r in journal.query(JournalQuery(stream="order", trigger="create", stream_id="b"))] == [
        2
    ]


def test_concurrent_appends_to_one_stream_have_no_gaps_or_duplicates(journal_url: str) -> None:
    """Eight writers (own connections, as separate processes would have) race on one stream."""
    SqlJournal(journal_url).append([entry("hot", 1)])
    per_writer, writers = 15, 8
    errors: list[BaseException] = []

    def writer() -> None:
        j = SqlJournal(journal_url)
        try:
            done = 0
            while done < per_writer:
                version = j.stream_version("order", "hot") + 1
                state = "NEW" if version % 2 == 0 else "PREFLIGHT"
                trigger = "x"
                try:
                    j.append([NewEntry("order", "hot", version, trigger, None, state, {"v": version}, "w")])
                    done += 1
                except VersionConflict:
                    continue
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            j.close()

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    j = SqlJournal(journal_url)
    versions = [r.version for r in j.stream("order", "hot")]
    assert versions == list(range(1, 1 + 1 + per_writer * writers))
    seqs = [row[0] for row in j.scan()]
    assert seqs == list(range(1, len(seqs) + 1))
    j.close()


TAMPER = {
    "payload": 'UPDATE journal SET payload = \'{"mode":"live"}\' WHERE seq = 2',
    "reason": "UPDATE journal SET reason = 'edited' WHERE seq = 2",
    "to_state": "UPDATE journal SET to_state = 'FILLED' WHERE seq = 2",
    "actor": "UPDATE journal SET actor = 'mallory' WHERE seq = 2",
    "created_at": "UPDATE journal SET created_at = '2020-01-01T00:00:00.000000Z' WHERE seq = 2",
    "hash": "UPDATE journal SET hash = '" + "f" * 64 + "' WHERE seq = 2",
    "delete": "DELETE FROM journal WHERE seq = 2",
}


@pytest.mark.parametrize("column", list(TAMPER))
def test_tampering_with_any_row_is_detected(journal: SqlJournal, column: str) -> None:
    journal.append([entry("a", 1)])
    journal.append([entry("a", 2, "preflight", "NEW", "PREFLIGHT")])
    journal.append([entry("a", 3, "send", "PREFLIGHT", "SENT")])
    replay(journal.scan())
    # the test plays the attacker, outside the code's API, with the append-only triggers switched off
    attacker.execute(journal.url, TAMPER[column])
    with pytest.raises(JournalCorrupt) as info:
        replay(journal.scan())
    assert info.value.seq in (2, 3)  # the edited row, or (after a deletion or hash edit) the next one
    assert f"seq {info.value.seq}" in str(info.value)


def test_a_chain_consistent_but_illegal_transition_is_rejected(journal: SqlJournal) -> None:
    journal.append([entry("a", 1)])
    journal.append([entry("a", 2, "fill", "NEW", "FILLED")])  # re-hashed properly, but not an FSM edge
    with pytest.raises(JournalCorrupt, match="seq 2: illegal order transition"):
        replay(journal.scan())


def test_a_version_gap_is_rejected(journal: SqlJournal) -> None:
    journal.append([entry("a", 1)])
    journal.append([entry("a", 3, "preflight", "NEW", "PREFLIGHT")])
    with pytest.raises(JournalCorrupt, match="seq 2: version 3 after 1"):
        replay(journal.scan())


def test_a_clean_group_commit_takes_the_single_insert_path(journal: SqlJournal) -> None:
    """Several groups chain one after another in one transaction, without the savepoint fallback."""
    calls: list[int] = []
    slow = journal._append_one_by_one
    journal._append_one_by_one = lambda groups: calls.append(len(groups)) or slow(groups)  # type: ignore[method-assign]
    results = journal.append_groups(
        [[entry(s, 1), entry(s, 2, "preflight", "NEW", "PREFLIGHT")] for s in "abc"]
    )
    assert calls == []
    assert [r.seq for recs in results if isinstance(recs, list) for r in recs] == [1, 2, 3, 4, 5, 6]
    assert replay(journal.scan()).rows == 6


@pytest.mark.postgres
def test_settle_waits_until_no_transaction_holds_the_chain(journal_url: str) -> None:
    """After a commit whose answer was lost the writer reads the journal back (engine.writer); on
    PostgreSQL that COMMIT may still be running, or its transaction still open, in a backend the client
    lost: it holds the chain lock until it ends, and settle waits for that (bounded by its timeout)."""
    if not journal_url.startswith("postgresql"):
        pytest.skip("SQLite commits in the writer's own thread: nothing can be in flight")
    journal = SqlJournal(journal_url)
    holder = create_engine(journal_url)
    try:
        with holder.connect() as conn:
            schema = str(conn.exec_driver_sql("SELECT current_schema()").scalar())
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({stable_key('propbot.chain', schema)})")
            with pytest.raises(JournalUnavailable):
                journal.settle(timeout_s=0.2)  # an append in flight: it cannot tell yet
            waited: list[float] = []

            def settle() -> None:
                start = time.monotonic()
                journal.settle(timeout_s=10)
                waited.append(time.monotonic() - start)

            waiter = threading.Thread(target=settle)
            waiter.start()
            time.sleep(0.3)
            assert waiter.is_alive()  # still waiting for the transaction to end
            conn.commit()  # it ends (committed or not): settle returns
            waiter.join(10)
        assert waited
        assert waited[0] >= 0.25
    finally:
        holder.dispose()
        journal.close()
