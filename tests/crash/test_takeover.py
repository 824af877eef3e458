"""Several engines on one PostgreSQL, as real `propbot serve` processes against the simulator:

- two engines for one account: exactly one writes, the other is STANDBY and refuses commands (503
  `standby`); SIGKILL the active one under a steady flow of orders; the standby takes over (replay,
  verify, reconcile, HOLD restart) and the journal agrees with the simulator's ground truth — nothing
  lost, nothing placed twice (orders whose send outcome died with the process are reconciled by client
  order id); a relay (`propbot relay`, a private nats-server) runs across the takeover, and the mirror
  rebuilt from the stream equals the journal row by row (`journal verify --against-mirror`);
- the active engine's lease session ended by the server: it fences itself (503 `lease_lost`, exit code 3)
  and the standby takes over; no row of the fenced engine comes after the new writer's first row;
- two engines for two accounts write concurrently on one database; each account's chain verifies.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from adapters.simulator.server import SimulatorServer
from engine.persistence.sql_journal import SqlJournal
from tests.agreement import ground_truth, journal_agrees_with_venue, sim_fault
from tests.conftest import PG_SKIP, PG_URL, _pg_schema_url, pg_schema
from tests.crash.conftest import _BIG
from tests.crash.harness import (
    UNKNOWN_GRACE_S,
    ApiProcess,
    assert_answered_from_the_journal,
    go_live,
    order_body,
)
from tests.crash.test_kill9 import Burst
from tests.e2e.server import SIM_KEY, SIM_SECRET, approver_key, journal_rows
from tests.outbox.broker import Broker, free_port, relay_process, stop
from tests.outbox.test_broker_outage import _status as relay_status
from tests.outbox.test_mirror import _mirror_cli
from tests.waiting import eventually

pytestmark = pytest.mark.postgres


@pytest.fixture
def accounts() -> Iterator[list[str]]:
    """Fresh account ids; their journal schemas are dropped afterwards."""
    if not PG_URL:
        pytest.skip(PG_SKIP)
    ids = [f"t{uuid.uuid4().hex[:10]}" for _ in range(2)]
    yield ids
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        for account in ids:
            conn.execute(text(f"DROP SCHEMA IF EXISTS propbot_{account} CASCADE"))
    admin.dispose()


@pytest.fixture
def mirror_schema() -> Iterator[str]:
    """An empty PostgreSQL schema for the mirror (the mirror migrates it)."""
    with pg_schema("m", migrate=False) as url:
        yield url


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "nats")  # skips without nats-server
    b.start()
    yield b
    b.kill()


@pytest.fixture
def engines() -> Iterator[list[ApiProcess]]:
    started: list[ApiProcess] = []
    yield started
    for proc in started:
        proc.stop()


def _engine(
    engines: list[ApiProcess], folder: Path, sim: SimulatorServer, account: str, approvers: dict[str, str],
    operators_of: ApiProcess | None = None,
) -> ApiProcess:  # fmt: skip
    proc = ApiProcess(
        folder, sim.base_url, sim.ws_url, approvers,
        config_extra={"account": account, "journal": {"url": PG_URL}}, operators_of=operators_of,
    )  # fmt: skip
    engines.append(proc)
    return proc


def _status(proc: ApiProcess) -> dict[str, Any]:
    body: dict[str, Any] = proc.client("viewer").get("/api/status").json()
    return body


def _ready(proc: ApiProcess) -> bool:
    try:
        return httpx.get(f"{proc.base_url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _verify(proc: ApiProcess) -> str:
    done = proc.cli("journal", "verify", "--config", str(proc.config_path), "--data-dir", str(proc.data_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("journal OK (account "), done.stdout
    return done.stdout


def _writers(rows: list[dict[str, Any]]) -> list[str]:
    """The engine ids in journal order, each run of rows by one engine once."""
    runs: list[str] = []
    for row in rows:
        if not runs or runs[-1] != row["engine_id"]:
            runs.append(row["engine_id"])
    return runs


def test_the_standby_takes_over_when_the_active_engine_is_killed_under_load(
    tmp_path: Path, sim: SimulatorServer, accounts: list[str], engines: list[ApiProcess],
    private_broker: Broker, mirror_schema: str,
) -> None:  # fmt: skip
    account = accounts[0]
    key, public = approver_key()
    active = _engine(engines, tmp_path / "a", sim, account, {"approver2": public}).start()
    standby = _engine(engines, tmp_path / "b", sim, account, {"approver2": public}, active).start(ready=False)
    a_id = _status(active)["engine_id"]
    # The account's relay, a process of its own: it follows the chain across the change of writer
    primary_url, source, relay_port = _pg_schema_url(f"propbot_{account}"), f"propbot_{account}", free_port()
    relay = relay_process(primary_url, private_broker.url, source, "PROPBOT", status_port=relay_port)
    try:
        _takeover_under_load(sim, active, standby, key, a_id)
        # Journal, mirror and simulator agree: B stops so the journal's head is final, the relay publishes
        # up to it, the mirror is rebuilt from the stream alone and compared row by row
        standby.stop()
        primary = SqlJournal(primary_url)
        head = primary.last_seq()
        eventually(lambda: _relay_cursor(relay_port) == head, timeout=60, interval=0.1)
        mirrored = _mirror_cli(private_broker.url, mirror_schema, source)
        assert mirrored.returncode == 0, mirrored.stdout + mirrored.stderr
        assert f"head seq {head}, {head} rows written" in mirrored.stdout, mirrored.stdout
        mirror = SqlJournal(mirror_schema)
        assert list(mirror.scan()) == list(primary.scan())
        mirror.close()
        primary.close()
        against = standby.cli("journal", "verify", "--config", str(standby.config_path),
                              "--data-dir", str(standby.data_dir), "--against-mirror", mirror_schema)  # fmt: skip
        assert against.returncode == 0, against.stdout + against.stderr
        assert f"mirror OK: {head} rows equal, last seq {head}" in against.stdout, against.stdout
    finally:
        log = stop(relay)
    assert "ERROR" not in log, log


def _relay_cursor(port: int) -> int:
    try:
        return int(relay_status(port)["cursor"])
    except OSError:
        return -1


def _takeover_under_load(
    sim: SimulatorServer, active: ApiProcess, standby: ApiProcess, key: Any, a_id: str
) -> None:
    account = _status(active)["account"]

    # Exactly one writer: B is STANDBY, names A as the holder, refuses commands and journals nothing
    status = _status(standby)
    assert (status["role"], status["account"]) == ("STANDBY", account)
    assert status["components"]["leadership"]["status"] == "WARN"
    assert status["components"]["leadership"]["detail"]["holder"]["engine_id"] == a_id
    refused = standby.client("trader").post("/api/live/order", json=order_body("pb-sb-0", "rest"))
    assert (refused.status_code, refused.json()["reason"]) == (503, "standby"), refused.text
    assert httpx.get(f"{standby.base_url}/readyz").json()["reason"] == "standby"
    assert _status(active)["components"]["leadership"]["detail"]["role"] == "ACTIVE"
    go_live(active, key)

    # A steady flow of live orders on A (each ~100 ms at the venue); SIGKILL A in the middle of it
    sim_fault(sim.base_url, {"latency_ms": 20})
    bodies = {f"pb-to-{i:03d}": order_body(f"pb-to-{i:03d}", "rest" if i % 2 else "fill") for i in range(120)}
    burst = Burst(active, bodies, workers=4)
    eventually(lambda: burst.answered() >= 20, timeout=60, interval=0.005)
    active.kill9()
    burst.join()
    assert burst.dropped, "the kill came after the flow: nothing was in flight"
    sim_fault(sim.base_url, None)

    eventually(lambda: _ready(standby), timeout=60, interval=0.05)  # the takeover
    status = _status(standby)
    assert status["role"] == "ACTIVE"
    b_id = status["engine_id"]
    session = status["session"]
    assert (session["state"], session["hold_reason"]) == ("HOLD", "restart"), session

    auditor = standby.client("auditor")
    streams, truth = journal_agrees_with_venue(auditor, sim.base_url, timeout_s=UNKNOWN_GRACE_S + 10)
    assert set(burst.answers) <= set(streams)  # every order confirmed to a client is journaled
    rows = journal_rows(auditor)
    assert _writers(rows) == [a_id, b_id]  # A's rows, then only B's: never interleaved
    (took_over,) = [r for r in rows if r["trigger"] == "writer.lease_acquired" and r["engine_id"] == b_id]
    assert took_over["payload"]["previous_holder"]["engine_id"] == a_id
    assert _verify(standby)
    # B had followed the journal while standing by: it read only the tail at takeover, and verified the
    # whole prefix again once connected
    lead = lambda: _status(standby)["components"]["leadership"]["detail"]  # noqa: E731
    eventually(lambda: lead()["prefix_verify"] == "OK", timeout=60, interval=0.2)

    # A client retrying everything on the new writer: journaled ids answer from the journal, the rest
    # meet the HOLD; nothing reaches the venue a second time
    trader = standby.client("trader")
    for cid, body in bodies.items():
        r = trader.post("/api/live/order", json=body)
        if cid in streams:
            assert_answered_from_the_journal(cid, r)
        else:
            assert (r.status_code, r.json()["reason"]) == (409, "session_hold"), (cid, r.text)
    assert ground_truth(sim.base_url)["real_orders"] == truth["real_orders"]


def test_an_engine_whose_lease_session_ends_fences_itself_and_the_standby_takes_over(
    tmp_path: Path, sim: SimulatorServer, accounts: list[str], engines: list[ApiProcess]
) -> None:
    account = accounts[0]
    _, public = approver_key()
    active = _engine(engines, tmp_path / "a", sim, account, {"approver2": public}).start()
    standby = _engine(engines, tmp_path / "b", sim, account, {"approver2": public}, active).start(ready=False)
    a_id = _status(active)["engine_id"]
    assert _status(standby)["role"] == "STANDBY"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:  # what the server does when A's connection is gone (partition, proxy)
        ended = conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n"),
            {"n": f"propbot:{a_id}"},
        ).all()
    admin.dispose()
    assert [tuple(r) for r in ended] == [(True,)]

    assert active.proc is not None
    assert active.proc.wait(timeout=60) == 3  # fenced, then exited for a supervisor to restart it
    assert "FENCED" in active.log_path.read_text()
    eventually(lambda: _ready(standby), timeout=60, interval=0.05)
    b_id = _status(standby)["engine_id"]
    rows = journal_rows(standby.client("auditor"))
    assert _writers(rows) == [a_id, b_id]
    assert _verify(standby)


def test_two_accounts_write_concurrently_and_each_chain_verifies(
    tmp_path: Path, accounts: list[str], engines: list[ApiProcess]
) -> None:
    key, public = approver_key()
    sims = [
        SimulatorServer(SIM_KEY, SIM_SECRET, weight_limit=_BIG, order_limit_10s=_BIG, order_limit_1d=_BIG)
        for _ in accounts
    ]  # one venue account each: each engine's ground truth is its own
    for s in sims:
        s.__enter__()
    try:
        procs = [
            _engine(engines, tmp_path / account, s, account, {"approver2": public}).start()
            for account, s in zip(accounts, sims, strict=True)
        ]
        for proc in procs:
            go_live(proc, key)
        bursts = [
            Burst(proc, {f"pb-{a}-{i:02d}": order_body(f"pb-{a}-{i:02d}", "rest" if i % 2 else "fill")
                         for i in range(40)}, workers=4)
            for a, proc in zip(accounts, procs, strict=True)
        ]  # fmt: skip
        for burst in bursts:
            burst.join()
            assert set(burst.answers.values()) == {200}, burst.answers
        for account, proc, s in zip(accounts, procs, sims, strict=True):
            out = _verify(proc)
            assert f"schema propbot_{account}" in out
            auditor = proc.client("auditor")
            streams, truth = journal_agrees_with_venue(auditor, s.base_url, timeout_s=10)
            assert len(streams) == 40 == truth["real_orders"]
            rows = journal_rows(auditor)
            assert rows[0]["seq"] == 1  # its own chain, its own seq
            assert {r["engine_id"] for r in rows} == {_status(proc)["engine_id"]}
            assert all(r["stream_id"].startswith(f"pb-{account}") for r in rows if r["stream"] == "order")
    finally:
        for s in sims:
            s.__exit__(None, None, None)
