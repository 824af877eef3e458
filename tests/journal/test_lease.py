"""One writer per account (PostgreSQL): the writer lease, fencing of a writer that lost it, and accounts'
chains that never wait for each other. Every test runs on a real server; a lost session is a backend
ended with pg_terminate_backend, which is what the server does when a client's connection dies."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from engine.errors import JournalCorrupt
from engine.journal import JournalQuery, row_hash
from engine.persistence.lease import LeaseLost, WriterLease, lease_key, stable_key
from engine.persistence.migrate import upgrade
from engine.persistence.sql_journal import SqlJournal
from engine.replay import replay
from tests.conftest import PG_SKIP, PG_URL, _pg_schema_url
from tests.journal import attacker
from tests.journal.test_sql_journal import entry
from tests.waiting import eventually

pytestmark = pytest.mark.postgres


@pytest.fixture
def admin() -> Iterator[Engine]:
    if not PG_URL:
        pytest.skip(PG_SKIP)
    eng = create_engine(PG_URL)
    yield eng
    eng.dispose()


@pytest.fixture
def schemas(admin: Engine) -> Iterator[list[str]]:
    """Two migrated account schemas, dropped afterwards."""
    names = [f"t_lease_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with admin.begin() as conn:
        for name in names:
            conn.execute(text(f"CREATE SCHEMA {name}"))
    for name in names:
        upgrade(_pg_schema_url(name))
    yield names
    with admin.begin() as conn:
        for name in names:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))


@pytest.fixture
def opened() -> Iterator[list[WriterLease | SqlJournal]]:
    things: list[WriterLease | SqlJournal] = []
    yield things
    for thing in reversed(things):
        thing.close()


def _lease(opened: list[WriterLease | SqlJournal], schema: str, engine_id: str) -> WriterLease:
    lease = WriterLease(_pg_schema_url(schema), schema, engine_id)
    opened.append(lease)
    return lease


def _journal(opened: list[WriterLease | SqlJournal], schema: str, lease: WriterLease | None) -> SqlJournal:
    j = SqlJournal(_pg_schema_url(schema), engine_id=lease.engine_id if lease else None, lease=lease)
    opened.append(j)
    return j


def _terminate(admin: Engine, pid: int | None) -> None:
    """What the server does when the client's connection is gone: the session ends, its locks go."""
    assert pid is not None
    with admin.begin() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()


def test_one_writer_per_schema_and_the_standby_sees_who(schemas: list[str], opened: list) -> None:
    a, b = _lease(opened, schemas[0], "host-a:1:aa"), _lease(opened, schemas[0], "host-b:2:bb")
    other = _lease(opened, schemas[1], "host-c:3:cc")
    assert a.try_acquire()
    assert not b.try_acquire()
    assert other.try_acquire()  # another account's lease is another key
    assert (a.state, b.state) == ("ACTIVE", "STANDBY")
    assert b.holder is not None
    assert (b.holder.engine_id, b.holder.pid) == ("host-a:1:aa", a.backend_pid)
    assert a.key == lease_key(schemas[0]) != other.key
    assert a.check()


def test_the_standby_names_the_holder_of_its_own_database(schemas: list[str], opened: list) -> None:
    """Advisory locks belong to a database: an engine of the same schema name in another database on the
    server (staging beside production) holds its own lease, and used to be the one a standby named as
    the holder (and the new writer's writer.lease_acquired row as the previous holder)."""
    other_db = make_url(PG_URL).set(database="postgres").render_as_string(hide_password=False)
    elsewhere = WriterLease(other_db, schemas[0], "other-database:1:xx")
    opened.append(elsewhere)
    assert elsewhere.try_acquire()
    holder = _lease(opened, schemas[0], "host-a:1:aa")
    assert holder.try_acquire()
    standby = _lease(opened, schemas[0], "host-b:2:bb")
    assert not standby.try_acquire()
    assert standby.holder is not None
    assert (standby.holder.engine_id, standby.holder.pid) == ("host-a:1:aa", holder.backend_pid)


def test_the_lease_passes_when_the_holders_session_ends(
    schemas: list[str], opened: list, admin: Engine
) -> None:
    a, b = _lease(opened, schemas[0], "a"), _lease(opened, schemas[0], "b")
    assert a.try_acquire()
    _terminate(admin, a.backend_pid)
    eventually(b.try_acquire, timeout=20, interval=0.05)
    assert not a.check()
    assert a.state == "LOST"
    assert not a.try_acquire()  # a lost lease is never taken again by that process


def test_a_zombie_writer_cannot_append_after_the_standby_took_over(
    schemas: list[str], opened: list, admin: Engine
) -> None:
    a, b = _lease(opened, schemas[0], "zombie"), _lease(opened, schemas[0], "standby")
    assert a.try_acquire()
    ja = _journal(opened, schemas[0], a)
    ja.append([entry("o1", 1)])
    _terminate(admin, a.backend_pid)  # A still believes it is ACTIVE: it has not looked yet
    assert a.state == "ACTIVE"
    eventually(b.try_acquire, timeout=20, interval=0.05)
    jb = _journal(opened, schemas[0], b)
    jb.append([entry("o2", 1)])
    with pytest.raises(LeaseLost):
        ja.append([entry("o3", 1)])
    with pytest.raises(LeaseLost):  # and it stays fenced: no reconnect for writing
        ja.append([entry("o4", 1)])
    assert a.state == "LOST"
    jb.append([entry("o5", 1)])
    rows = list(jb.scan())
    assert [(r[2], r[14]) for r in rows] == [("o1", "zombie"), ("o2", "standby"), ("o5", "standby")]
    assert replay(rows).rows == 3


def test_an_append_in_flight_when_the_lease_is_lost_never_commits(
    schemas: list[str], opened: list, admin: Engine
) -> None:
    """A's append is held inside its transaction (another session holds the chain lock it waits for)
    when A's session ends; B takes over; A's rows are not in the journal, B's are."""
    schema = schemas[0]
    a, b = _lease(opened, schema, "zombie"), _lease(opened, schema, "standby")
    assert a.try_acquire()
    ja = _journal(opened, schema, a)
    ja.append([entry("o1", 1)])
    blocker = admin.connect()
    tx = blocker.begin()
    blocker.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": stable_key("propbot.chain", schema)})
    outcome: list[BaseException | None] = []

    def zombie_append() -> None:
        try:
            ja.append([entry("o2", 1)])
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=zombie_append)
    thread.start()

    def a_waits() -> bool:
        with admin.connect() as conn:
            return bool(conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = :p AND NOT granted"),
                {"p": a.backend_pid},
            ).scalar())  # fmt: skip

    eventually(a_waits, timeout=20, interval=0.02)
    _terminate(admin, a.backend_pid)
    eventually(b.try_acquire, timeout=20, interval=0.05)
    tx.commit()
    blocker.close()
    thread.join(timeout=30)
    assert [type(o) for o in outcome] == [LeaseLost], outcome
    jb = _journal(opened, schema, b)
    jb.append([entry("o3", 1)])
    rows = list(jb.scan())
    assert [(r[2], r[14]) for r in rows] == [("o1", "zombie"), ("o3", "standby")]
    replay(rows)


def test_an_append_on_a_session_without_the_lock_is_refused(schemas: list[str], opened: list) -> None:
    """A pooler in transaction mode (or a reset like DISCARD ALL) would leave the writer's session without
    the lock: the append's own check refuses it, nothing is written."""
    a = _lease(opened, schemas[0], "a")
    assert a.try_acquire()
    ja = _journal(opened, schemas[0], a)
    ja.append([entry("o1", 1)])
    with a.writing() as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_unlock({a.key})")
        conn.rollback()
    with pytest.raises(LeaseLost):
        ja.append([entry("o2", 1)])
    assert a.state == "LOST"
    assert ja.count() == 1


def test_engine_id_is_hashed_and_old_rows_without_it_still_verify(schemas: list[str], opened: list) -> None:
    url = _pg_schema_url(schemas[0])
    old = _journal(opened, schemas[0], None)  # a writer from before engine ids: NULL
    (r1,) = old.append([entry("o1", 1)])
    assert r1.engine_id is None
    assert r1.hash == row_hash(r1.prev_hash, r1.seq, r1.stream, r1.stream_id, r1.version, r1.trigger,
                               r1.from_state, r1.to_state, r1.payload_json, r1.actor, r1.reason,
                               r1.schema_version, r1.created_at)  # fmt: skip
    new = SqlJournal(url, engine_id="host:42:abc")
    opened.append(new)
    (r2,) = new.append([entry("o2", 1)])
    assert r2.engine_id == "host:42:abc"
    assert [r.engine_id for r in new.query(JournalQuery())] == [None, "host:42:abc"]
    assert replay(new.scan()).rows == 2

    def blame_someone_else(rows: attacker.Rows) -> attacker.Rows:
        rows[1][14] = "host:43:abc"
        return rows

    attacker.rewrite(url, blame_someone_else, recompute_from=None)
    with pytest.raises(JournalCorrupt, match="seq 2: hash does not match"):
        replay(new.scan())


def test_two_accounts_append_without_waiting_for_each_other(
    schemas: list[str], opened: list, admin: Engine
) -> None:
    leases = [_lease(opened, s, f"engine-{i}") for i, s in enumerate(schemas)]
    assert all(lease.try_acquire() for lease in leases)
    journals = [_journal(opened, s, lease) for s, lease in zip(schemas, leases, strict=True)]
    # Account 0's chain is locked by another session: account 1 appends regardless
    blocker = admin.connect()
    tx = blocker.begin()
    blocker.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": stable_key("propbot.chain", schemas[0])})
    journals[1].append([entry("solo", 1)])
    tx.rollback()
    blocker.close()

    def flow(j: SqlJournal, tag: str) -> None:
        for i in range(60):
            j.append_groups([[entry(f"{tag}-{i}-{k}", 1)] for k in range(3)])

    threads = [threading.Thread(target=flow, args=(j, f"acct{i}")) for i, j in enumerate(journals)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    counts = [replay(j.scan()).rows for j in journals]
    assert counts == [180, 181]  # each chain is its own: seq 1..n, verified


def test_every_postgresql_connection_of_the_journal_has_keepalives_and_a_url_keeps_its_own() -> None:
    """A half-open connection must fail the journal's writer (and the mirror's insert) in seconds, not
    block it for the kernel's hours: libpq keepalives and tcp_user_timeout on every engine make_engines
    builds, as on the lease's own session; a value in the URL wins."""
    from engine.persistence.database import PG_KEEPALIVES, make_engines

    if not PG_URL:
        pytest.skip(PG_SKIP)
    sep = "&" if "?" in PG_URL else "?"
    for url, idle in ((PG_URL, "5"), (f"{PG_URL}{sep}keepalives_idle=7", "7")):
        writer, _ = make_engines(url)
        try:
            with writer.connect() as conn:
                params = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
        finally:
            writer.dispose()
        assert params["keepalives_idle"] == idle
        assert params["tcp_user_timeout"] == str(PG_KEEPALIVES["tcp_user_timeout"])
        assert params["connect_timeout"] == str(PG_KEEPALIVES["connect_timeout"])
