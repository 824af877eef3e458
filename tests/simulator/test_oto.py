"""PENDING_NEW legs: POST /_sim/oto places an OTO-like pair (working leg NEW, pending leg PENDING_NEW with
the list's orderListId); openOrders and the order query show the pending leg; it goes on the book when the
working leg fills; cancelling one leg cancels the list. The Binance client parses the legs."""

from __future__ import annotations

from decimal import Decimal

import httpx

from adapters.binance.rest import BinanceSpotClient
from adapters.binance.schemas import venue_order_from_json
from adapters.simulator.server import SimulatorServer
from engine.types import VenueStatus
from tests.simulator.helpers import SignedClient

WORKING = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
           "quantity": "0.01", "price": "64000.00", "newClientOrderId": "oto-w"}  # fmt: skip
PENDING = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
           "quantity": "0.01", "price": "66000.00", "newClientOrderId": "oto-p"}  # fmt: skip


def _oto(sim: SimulatorServer, working: dict[str, str], pending: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{sim.base_url}/_sim/oto", json={"working": working, "pending": pending})


def test_the_pending_leg_is_listed_until_the_working_leg_fills(
    sim: SimulatorServer, client: SignedClient
) -> None:
    r = _oto(sim, WORKING, PENDING)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["contingencyType"] == "OTO"
    list_id = answer["orderListId"]
    assert [o["status"] for o in answer["orderReports"]] == ["NEW", "PENDING_NEW"]
    opened = client.signed("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}).json()
    by_id = {o["clientOrderId"]: o for o in opened}
    assert (by_id["oto-w"]["status"], by_id["oto-p"]["status"]) == ("NEW", "PENDING_NEW")
    assert by_id["oto-w"]["orderListId"] == by_id["oto-p"]["orderListId"] == list_id
    pending = client.signed(
        "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "oto-p"}
    ).json()
    assert pending["status"] == "PENDING_NEW"
    # the working leg fills when the price trades through it: the pending leg goes on the book
    httpx.post(f"{sim.base_url}/_sim/price", json={"symbol": "BTCUSDT", "price": "63990"}).raise_for_status()
    working = client.signed(
        "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "oto-w"}
    ).json()
    assert working["status"] == "FILLED"
    placed = client.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "oto-p"}).json()
    assert placed["status"] == "NEW"
    assert placed["orderListId"] == list_id


def test_cancelling_the_pending_leg_cancels_the_list(sim: SimulatorServer, client: SignedClient) -> None:
    assert (
        _oto(
            sim, {**WORKING, "newClientOrderId": "oto-w2"}, {**PENDING, "newClientOrderId": "oto-p2"}
        ).status_code
        == 200
    )
    r = client.signed("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "oto-p2"})
    assert r.json()["status"] == "CANCELED"
    w = client.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "oto-w2"}).json()
    assert w["status"] == "CANCELED"
    ids = [
        o["clientOrderId"] for o in client.signed("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}).json()
    ]
    assert "oto-w2" not in ids
    assert "oto-p2" not in ids


def test_a_refused_leg_places_nothing(sim: SimulatorServer) -> None:
    r = _oto(sim, {**WORKING, "newClientOrderId": "oto-w3"}, {**PENDING, "quantity": "0.000001"})
    assert r.status_code == 400
    assert r.json()["code"] == -1013
    assert not [o for o in sim.state.engine.ground_truth() if o["clientOrderId"] == "oto-w3"]
    assert _oto(sim, {**WORKING, "type": "MARKET"}, PENDING).status_code == 400
    assert httpx.post(f"{sim.base_url}/_sim/oto", json={"working": {}}).status_code == 400


async def test_the_client_parses_both_legs(sim: SimulatorServer) -> None:
    assert (
        _oto(
            sim, {**WORKING, "newClientOrderId": "oto-w4"}, {**PENDING, "newClientOrderId": "oto-p4"}
        ).status_code
        == 200
    )
    client = BinanceSpotClient(
        "testnet", sim.api_key, sim.api_secret, {"rest": sim.base_url, "ws": sim.ws_url}
    )
    try:
        legs = {
            vo.client_order_id: vo
            for vo in map(venue_order_from_json, await client.open_orders({"symbol": "BTCUSDT"}))
        }
    finally:
        await client.aclose()
    assert legs["oto-w4"].status is VenueStatus.NEW
    assert legs["oto-p4"].status is VenueStatus.PENDING_NEW
    assert legs["oto-p4"].raw["orderListId"] == legs["oto-w4"].raw["orderListId"] >= 0
    assert legs["oto-p4"].orig_qty == Decimal("0.01")


def test_a_working_leg_that_fills_at_once_still_answers_pending_new(
    sim: SimulatorServer, client: SignedClient
) -> None:
    # rest-api.md: "the placement response will show the working order as FILLED but the pending order will
    # still appear as PENDING_NEW. You need to query the status of the pending order again"
    marketable = {**WORKING, "price": "65000.05", "newClientOrderId": "oto-w5"}
    r = _oto(sim, marketable, {**PENDING, "newClientOrderId": "oto-p5"})
    assert [o["status"] for o in r.json()["orderReports"]] == ["FILLED", "PENDING_NEW"]
    again = client.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "oto-p5"}).json()
    assert again["status"] == "NEW"
