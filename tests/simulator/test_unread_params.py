"""errors.md -1104 UNREAD_PARAMETERS: the simulator, like Binance, refuses a parameter the endpoint does
not read instead of ignoring it."""

from __future__ import annotations

from adapters.simulator.server import SimulatorServer
from tests.simulator.helpers import SignedClient, limit_buy


def test_an_unknown_order_parameter_is_minus_1104_and_places_nothing(
    sim: SimulatorServer, client: SignedClient
) -> None:
    r = client.signed("POST", "/api/v3/order", limit_buy(newClientOrderId="u-1", colour="blue"))
    assert r.status_code == 400
    # symbol side type timeInForce quantity price newClientOrderId timestamp signature are read; colour not
    assert r.json() == {
        "code": -1104,
        "msg": "Not all sent parameters were read; read '9' parameter(s) but was sent '10'.",
    }
    assert not [o for o in sim.state.engine.ground_truth() if o["clientOrderId"] == "u-1"]


def test_every_documented_order_parameter_is_read(client: SignedClient) -> None:
    r = client.signed(
        "POST",
        "/api/v3/order",
        limit_buy(newClientOrderId="u-2", newOrderRespType="ACK", recvWindow="5000",
                  selfTradePreventionMode="EXPIRE_MAKER"),
    )  # fmt: skip
    assert r.status_code == 200, r.text


def test_unknown_parameters_on_other_endpoints(client: SignedClient) -> None:
    assert client.get("/api/v3/ping", extra="1").json()["code"] == -1104
    assert client.get("/api/v3/time", x="1").json()["code"] == -1104
    assert client.get("/api/v3/exchangeInfo", symbol="BTCUSDT", foo="1").json()["code"] == -1104
    assert client.get("/api/v3/depth", symbol="BTCUSDT", limit="5").status_code == 200
    assert client.get("/api/v3/depth", symbol="BTCUSDT", lmit="5").json()["code"] == -1104
    account = client.signed("GET", "/api/v3/account", {"omitZeroBalances": "true"})
    assert account.status_code == 200
    assert client.signed("GET", "/api/v3/account", {"foo": "1"}).json()["code"] == -1104
    query = client.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": "1", "side": "BUY"})
    assert query.json()["code"] == -1104
    cancel = client.signed("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": "1", "qty": "1"})
    assert cancel.json()["code"] == -1104


def test_the_signature_is_checked_before_unread_parameters(client: SignedClient) -> None:
    r = client.signed("GET", "/api/v3/account", {"foo": "1"}, secret="wrong")
    assert r.json()["code"] == -1022
