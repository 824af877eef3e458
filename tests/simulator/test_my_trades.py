"""GET /api/v3/myTrades as rest-api.md "Account trade list" states it: the supported parameter
combinations only (-1128), at most 24 h between startTime and endTime (-1127), limit 1..1000 (-1130),
weight 5 with orderId and 20 without, the most recent trades by default and the first ones from fromId."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.simulator.server import SimulatorServer
from tests.simulator.helpers import KEY, SECRET, FakeClock, SignedClient


@pytest.fixture
def fake_client(clock: FakeClock) -> Iterator[SignedClient]:
    """A simulator on a test clock with the real weight limit (the shared fixture's is 60)."""
    with SimulatorServer(KEY, SECRET, clock_ms=clock) as server:
        c = SignedClient(server.base_url, clock)
        yield c
        c.close()


def market(qty: str, side: str = "BUY") -> dict[str, str]:
    return {"symbol": "BTCUSDT", "side": side, "type": "MARKET", "quantity": qty, "newOrderRespType": "FULL"}


def trades(client: SignedClient, **params: str) -> Any:
    r = client.signed("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", **params})
    return r.json() if r.status_code == 200 else (r.status_code, r.json()["code"])


@pytest.fixture
def three_orders(fake_client: SignedClient, clock: FakeClock) -> list[dict[str, Any]]:
    placed = []
    for qty, side in (("0.01", "BUY"), ("0.02", "BUY"), ("0.01", "SELL")):
        placed.append(fake_client.signed("POST", "/api/v3/order", market(qty, side)).json())
        clock.advance(1000)
    return placed


def test_defaults_limit_and_from_id(fake_client: SignedClient, three_orders: list[dict[str, Any]]) -> None:
    every = trades(fake_client)
    ids = [t["id"] for t in every]
    assert ids == sorted(ids)
    assert len(ids) >= 3
    assert [t["id"] for t in trades(fake_client, limit="1")] == ids[-1:]  # the most recent by default
    assert [t["id"] for t in trades(fake_client, fromId=str(ids[1]), limit="1")] == [ids[1]]
    assert [t["id"] for t in trades(fake_client, fromId=str(ids[1]))] == ids[1:]
    second = three_orders[1]
    mine = trades(fake_client, orderId=str(second["orderId"]))
    assert [t["id"] for t in mine] == [f["tradeId"] for f in second["fills"]]
    assert {t["commission"] for t in mine} == {f["commission"] for f in second["fills"]}
    later = trades(fake_client, orderId=str(second["orderId"]), fromId=str(mine[-1]["id"]))
    assert [t["id"] for t in later] == [mine[-1]["id"]]


@pytest.mark.parametrize(
    "params",
    [
        {"orderId": "1", "startTime": "1"},
        {"orderId": "1", "endTime": "1"},
        {"fromId": "1", "startTime": "1"},
        {"fromId": "1", "endTime": "1"},
        {"orderId": "1", "fromId": "1", "startTime": "1"},
    ],
)
def test_undocumented_combinations_are_refused(fake_client: SignedClient, params: dict[str, str]) -> None:
    assert trades(fake_client, **params) == (400, -1128)


def test_time_window_and_limit_bounds(fake_client: SignedClient, clock: FakeClock) -> None:
    day = 24 * 3600 * 1000
    start = clock()
    assert trades(fake_client, startTime=str(start), endTime=str(start + day)) == []
    assert trades(fake_client, startTime=str(start), endTime=str(start + day + 1)) == (400, -1127)
    assert trades(fake_client, limit="1000") == []
    assert trades(fake_client, limit="1001") == (400, -1130)
    assert trades(fake_client, limit="0") == (400, -1130)
    r = fake_client.signed("GET", "/api/v3/myTrades", {})
    assert (r.status_code, r.json()["code"]) == (400, -1102)
    assert trades(fake_client, recvWindow="5000", orderId="1") == []
    r = fake_client.signed("GET", "/api/v3/myTrades", {"symbol": "NOPEUSDT"})
    assert (r.status_code, r.json()["code"]) == (400, -1121)
    r = fake_client.signed("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "side": "BUY"})
    assert r.json()["code"] == -1104  # a parameter myTrades does not read


def test_weights(fake_client: SignedClient, clock: FakeClock) -> None:
    clock.advance(60_000)  # a fresh weight minute
    first = fake_client.signed("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "orderId": "1"})
    second = fake_client.signed("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})
    used = int(second.headers["X-MBX-USED-WEIGHT-1M"]) - int(first.headers["X-MBX-USED-WEIGHT-1M"])
    assert (int(first.headers["X-MBX-USED-WEIGHT-1M"]), used) == (5, 20)
