"""kill -9 the API server at chosen points of live order flow, restart it on the same data dir, and compare
the journal with the simulator's ground truth (tests.crash.harness.check_recovered lists the invariants).

Kill points: (a) a burst of concurrent orders mid-stream; (b) after the write-ahead SENT rows while the
venue is still working on the requests (latency fault); (c) with lost responses (-1007 after execution)
still waiting for reconciliation (not-found lag). After each restart a client also retries every order
it sent, as any client that saw its connection drop would: nothing may be placed a second time.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx

from adapters.simulator.server import SimulatorServer
from tests.agreement import ground_truth, sim_fault
from tests.crash.harness import (
    UNKNOWN_GRACE_S,
    ApiProcess,
    assert_answered_from_the_journal,
    check_recovered,
    order_body,
)
from tests.e2e.server import journal_rows
from tests.waiting import eventually


class Burst:
    """Fire orders from a thread pool; record each answer, or the transport error a kill causes."""

    def __init__(self, api: ApiProcess, bodies: dict[str, dict[str, str]], workers: int) -> None:
        self.api, self.bodies = api, bodies
        self.answers: dict[str, int] = {}
        self.dropped: list[str] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(
            base_url=api.base_url,
            headers={"Authorization": f"Bearer {api.tokens['trader']}"},
            timeout=30,
            limits=httpx.Limits(max_connections=workers),
        )
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._futures = [self._pool.submit(self._send, cid, body) for cid, body in bodies.items()]

    def _send(self, cid: str, body: dict[str, str]) -> None:
        try:
            status = self._http.post("/api/live/order", json=body).status_code
        except httpx.TransportError:
            with self._lock:
                self.dropped.append(cid)
            return
        with self._lock:
            self.answers[cid] = status

    def answered(self) -> int:
        with self._lock:
            return len(self.answers)

    def join(self) -> None:
        for f in self._futures:
            f.result(timeout=60)
        self._pool.shutdown()
        self._http.close()


def _restart_and_check(api: ApiProcess, sim: SimulatorServer) -> tuple[dict[str, Any], dict[str, Any]]:
    sim_fault(sim.base_url, None)  # requests already inside the simulator finish; new ones are prompt
    api.start()
    return check_recovered(api, sim.base_url)


def _retry_everything(api: ApiProcess, bodies: dict[str, dict[str, str]], journaled: set[str]) -> None:
    """Resend every request after the restart: journaled ids answer from the journal, the rest meet HOLD."""
    trader = api.client("trader")
    for cid, body in bodies.items():
        r = trader.post("/api/live/order", json=body)
        if cid in journaled:
            assert_answered_from_the_journal(cid, r)
        else:
            assert (r.status_code, r.json()["reason"]) == (409, "session_hold"), (cid, r.text)


def test_kill_with_a_burst_of_orders_in_flight(live_api: ApiProcess, sim: SimulatorServer) -> None:
    # 20 ms per venue request: each live order (preflight + send) takes ~150 ms, so the burst is mid-stream
    sim_fault(sim.base_url, {"latency_ms": 20})
    bodies = {
        f"pb-crash-a-{i:02d}": order_body(f"pb-crash-a-{i:02d}", "rest" if i % 2 else "fill")
        for i in range(40)
    }
    burst = Burst(live_api, bodies, workers=8)
    eventually(lambda: burst.answered() >= 10, timeout=20, interval=0.005)
    live_api.kill9()
    burst.join()
    assert all(status == 200 for status in burst.answers.values()), burst.answers
    assert burst.dropped, "the kill came after the burst: nothing was in flight"

    streams, truth = _restart_and_check(live_api, sim)
    assert set(burst.answers) <= set(streams)  # everything confirmed to the client is journaled
    assert {o["status"] for o in truth["orders"]} == {"NEW", "FILLED"}

    _retry_everything(live_api, bodies, set(streams))
    assert ground_truth(sim.base_url)["real_orders"] == truth["real_orders"]


def test_kill_after_the_write_ahead_row_before_the_venue_answers(
    live_api: ApiProcess, sim: SimulatorServer
) -> None:
    # The venue takes 500 ms per request; the orders' preflights run first, then the SENT rows are
    # committed and the POSTs leave: kill as soon as every SENT row is in the journal
    sim_fault(sim.base_url, {"latency_ms": 500})
    bodies = {f"pb-crash-b-{i}": order_body(f"pb-crash-b-{i}", "rest" if i % 2 else "fill") for i in range(6)}
    auditor = live_api.client("auditor")
    burst = Burst(live_api, bodies, workers=len(bodies))

    def all_sent() -> bool:
        return len({r["stream_id"] for r in journal_rows(auditor, stream="order", trigger="send")}) == len(
            bodies
        )

    eventually(all_sent, timeout=20, interval=0.01)
    live_api.kill9()
    burst.join()
    # Under load the first answers may beat the kill; those orders are checked by the general invariants
    in_flight = set(bodies) - set(burst.answers)
    assert in_flight, "every order was answered before the kill: nothing was in flight"

    streams, truth = _restart_and_check(live_api, sim)
    executed = {o["clientOrderId"] for o in truth["orders"]}
    for cid in sorted(in_flight):
        rows = streams[cid]
        assert [r["trigger"] for r in rows[:4]] == ["create", "preflight", "send", "mark_unknown"], rows
        assert (rows[3]["actor"], rows[3]["reason"]) == ("reconciler", "restart after send")
        if cid not in executed:
            # The request died with the process before the venue handled it: absence is concluded only
            # after the grace period, by the reconciler, and nothing is resent
            assert [r["trigger"] for r in rows[4:]] == ["reconcile_rejected"], rows
            waited = _seconds(rows[4]["created_at"]) - _seconds(rows[3]["created_at"])
            assert waited >= UNKNOWN_GRACE_S, waited

    _retry_everything(live_api, bodies, set(streams))
    assert ground_truth(sim.base_url)["real_orders"] == len(executed)


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_kill_with_lost_responses_pending_reconciliation(live_api: ApiProcess, sim: SimulatorServer) -> None:
    # -1007 after execution, and the venue keeps answering "no such order" for a while: UNKNOWN stays open
    sim_fault(sim.base_url, {"lost_response": 3, "not_found_lag_s": 30})
    kinds = {"pb-crash-c-0": "rest", "pb-crash-c-1": "fill", "pb-crash-c-2": "rest"}
    bodies = {cid: order_body(cid, kind) for cid, kind in kinds.items()}
    trader, viewer = live_api.client("trader"), live_api.client("viewer")
    for body in bodies.values():
        r = trader.post("/api/live/order", json=body)
        assert (r.status_code, r.json()["reason"], r.json()["detail"]["state"]) == (
            504,
            "EXECUTION_STATUS_UNKNOWN",
            "UNKNOWN",
        ), r.text
    for cid in bodies:
        assert viewer.get(f"/api/orders/{cid}").json()["order"]["state"] == "UNKNOWN"
    live_api.kill9()

    streams, truth = _restart_and_check(live_api, sim)
    assert truth["lost_responses"] == 3
    # The restart's reconciliation marks the order UNKNOWN and resolves it by query; or the user stream's
    # catch-up after its subscription, racing it, reports the venue's state for the SENT order first
    expected = {
        "rest": ([*_SENT, "mark_unknown", "reconcile_acked"], [*_SENT, "ack"]),
        "fill": ([*_SENT, "mark_unknown", "reconcile_filled"], [*_SENT, "fill"], [*_SENT, "ack", "fill"]),
    }
    for cid, kind in kinds.items():
        triggers = [r["trigger"] for r in streams[cid]]
        assert triggers in [list(t) for t in expected[kind]], triggers
        assert streams[cid][-1]["actor"] == "reconciler"

    _retry_everything(live_api, bodies, set(streams))
    assert ground_truth(sim.base_url)["real_orders"] == 3


_SENT = ("create", "preflight", "send")


def test_kill_after_the_venue_executed_before_it_answered(live_api: ApiProcess, sim: SimulatorServer) -> None:
    # The venue executes at once and answers 3 s later: kill once the simulator holds every order
    sim_fault(sim.base_url, {"order_answer_delay_ms": 3000})
    kinds = {"pb-crash-d-0": "rest", "pb-crash-d-1": "fill", "pb-crash-d-2": "rest"}
    bodies = {cid: order_body(cid, kind) for cid, kind in kinds.items()}
    burst = Burst(live_api, bodies, workers=len(bodies))
    eventually(lambda: len(ground_truth(sim.base_url)["orders"]) == len(bodies), timeout=20, interval=0.01)
    live_api.kill9()
    burst.join()
    assert burst.answers == {}, "an answer arrived although the venue was holding them back"

    streams, truth = _restart_and_check(live_api, sim)
    # The restart's reconciliation marks the order UNKNOWN and resolves it by query; or the user stream's
    # catch-up after its subscription, racing it, reports the venue's state for the SENT order first
    expected = {
        "rest": ([*_SENT, "mark_unknown", "reconcile_acked"], [*_SENT, "ack"]),
        "fill": ([*_SENT, "mark_unknown", "reconcile_filled"], [*_SENT, "fill"], [*_SENT, "ack", "fill"]),
    }
    for cid, kind in kinds.items():
        triggers = [r["trigger"] for r in streams[cid]]
        assert triggers in [list(t) for t in expected[kind]], triggers
    _retry_everything(live_api, bodies, set(streams))
    assert (
        ground_truth(sim.base_url)["real_orders"] == truth["real_orders"] == 3
    )  # executed once, never resent
