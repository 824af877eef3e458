"""The simulator's WebSocket API (/ws-api/v3) over real loopback sockets: requests, signature subscription,
Ed25519 logon, executionReport / outboundAccountPosition events, and the user-stream faults."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from adapters.simulator.server import SimulatorServer
from adapters.simulator.ws_api import signature_payload
from tests.binance.test_signing import WS_PARAMS
from tests.simulator.helpers import KEY, SECRET, SignedClient, hmac_hex, limit_buy

# user-data-stream.md "Order Update": the fields every executionReport carries
ER_KEYS = {
    "e",
    "E",
    "s",
    "c",
    "S",
    "o",
    "f",
    "q",
    "p",
    "P",
    "F",
    "g",
    "C",
    "x",
    "X",
    "r",
    "i",
    "l",
    "z",
    "L",
    "n",
    "N",
    "T",
    "t",
    "I",
    "w",
    "m",
    "M",
    "O",
    "Z",
    "Y",
    "Q",
    "W",
    "V",
}


def url(sim: SimulatorServer) -> str:
    return f"{sim.ws_url}/ws-api/v3"


async def call(ws: ClientConnection, method: str, params: dict[str, Any] | None = None, rid: Any = 1) -> Any:
    """Send one request and return its answer, skipping events that arrive meanwhile."""
    body: dict[str, Any] = {"id": rid, "method": method}
    if params is not None:
        body["params"] = params
    await ws.send(json.dumps(body))
    return await recv_until(ws, lambda m: "status" in m and m.get("id") == rid)


async def recv_until(ws: ClientConnection, pred: Callable[[Any], bool], timeout: float = 5.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if pred(msg):
                return msg


async def recv_until_collect(ws: ClientConnection, pred: Callable[[Any], bool]) -> list[Any]:
    """Every message up to and including the first that matches."""
    out: list[Any] = []
    async with asyncio.timeout(5):
        while not out or not pred(out[-1]):
            out.append(json.loads(await ws.recv()))
    return out


def signed_params(sim: SimulatorServer, secret: str = SECRET, key: str = KEY, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"apiKey": key, "timestamp": sim.state.now_ms(), **extra}
    params["signature"] = hmac_hex(signature_payload(params).decode(), secret)
    return params


async def subscribe(sim: SimulatorServer, ws: ClientConnection) -> int:
    answer = await call(ws, "userDataStream.subscribe.signature", signed_params(sim))
    assert answer["status"] == 200, answer
    return int(answer["result"]["subscriptionId"])


async def events(ws: ClientConnection, n: int, kind: str | None = None, timeout: float = 5.0) -> list[Any]:
    out: list[Any] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            msg = json.loads(await ws.recv())
            if "event" in msg and (kind is None or msg["event"]["e"] == kind):
                out.append(msg)
    return out


@pytest.fixture
def admin(sim: SimulatorServer) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url)


def test_signature_payload_matches_the_docs_example() -> None:
    # web-socket-api.md "SIGNED request example (HMAC)", step 1 and 2: the vector the client's tests use
    params = {**WS_PARAMS, "signature": "ignored"}
    payload = signature_payload(params).decode()
    assert payload == (
        "apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&price=52000.00&"
        "quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&"
        "type=LIMIT"
    )
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    assert hmac_hex(payload, secret) == "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"


async def test_ping_time_and_errors(sim: SimulatorServer) -> None:
    async with connect(url(sim)) as ws:
        pong = await call(ws, "ping", rid="a")
        assert pong["status"] == 200
        assert pong["result"] == {}
        assert pong["id"] == "a"
        assert pong["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
        t = await call(ws, "v3/time", rid=2)
        assert abs(t["result"]["serverTime"] - sim.state.now_ms()) < 1000
        unknown = await call(ws, "nope", rid=3)
        assert unknown["status"] == 400
        assert unknown["error"]["code"] == -1020
        await ws.send("{not json")
        bad = json.loads(await ws.recv())
        assert bad == {"id": None, "status": 400, "error": {"code": -1135, "msg": "Invalid JSON Request"}}


async def test_subscribe_signature_checks_key_timestamp_signature(sim: SimulatorServer) -> None:
    async with connect(url(sim)) as ws:
        method = "userDataStream.subscribe.signature"
        no_key = await call(ws, method, signed_params(sim, key="other"))
        assert (no_key["status"], no_key["error"]["code"]) == (401, -2015)
        bad_sig = await call(ws, method, signed_params(sim, secret="wrong"))
        assert (bad_sig["status"], bad_sig["error"]["code"]) == (400, -1022)
        old = {"apiKey": KEY, "timestamp": sim.state.now_ms() - 10_000}
        old["signature"] = hmac_hex(signature_payload(old).decode())
        assert (await call(ws, method, old))["error"]["code"] == -1021
        missing = await call(ws, method, {"apiKey": KEY, "timestamp": sim.state.now_ms()})
        assert missing["error"]["code"] == -1102
        extra = await call(ws, method, signed_params(sim, symbol="BTCUSDT"))
        assert extra["error"]["code"] == -1104
        # HMAC signatures are case-insensitive; recvWindow is signed too
        params = signed_params(sim, recvWindow=10_000)
        params["signature"] = params["signature"].upper()
        ok = await call(ws, method, params)
        assert ok["status"] == 200
        assert ok["result"] == {"subscriptionId": 0}
        again = await call(ws, method, signed_params(sim))
        assert again["error"]["code"] == -2035
        status = await call(ws, "session.status")
        assert status["result"]["userDataStream"] is True
        assert status["result"]["apiKey"] is None


async def test_order_lifecycle_events(sim: SimulatorServer, client: SignedClient) -> None:
    async with connect(url(sim)) as ws:
        sub = await subscribe(sim, ws)
        placed = client.signed("POST", "/api/v3/order", limit_buy(price="60000", newClientOrderId="ws-1"))
        assert placed.status_code == 200, placed.text
        new, position = await events(ws, 2)
        assert new["subscriptionId"] == sub
        er = new["event"]
        assert set(er) == ER_KEYS
        assert (er["e"], er["x"], er["X"], er["c"], er["C"], er["s"]) == (
            "executionReport", "NEW", "NEW", "ws-1", "", "BTCUSDT",
        )  # fmt: skip
        assert (er["t"], er["n"], er["N"], er["w"], er["m"], er["r"], er["g"]) == (
            -1, "0", None, True, False, "NONE", -1,
        )  # fmt: skip
        assert er["i"] == placed.json()["orderId"]
        assert er["q"] == "0.00100000"
        assert er["p"] == "60000.00000000"
        pos = position["event"]
        assert pos["e"] == "outboundAccountPosition"
        usdt = next(b for b in pos["B"] if b["a"] == "USDT")
        assert usdt["l"] == "60.00000000"  # 0.001 * 60000 locked
        # the reference price moves through the resting buy: a maker fill at the order's price
        httpx.post(f"{sim.base_url}/_sim/price", json={"symbol": "BTCUSDT", "price": "59990"})
        trade = (await events(ws, 1, "executionReport"))[0]["event"]
        assert (trade["x"], trade["X"], trade["m"], trade["L"], trade["l"]) == (
            "TRADE", "FILLED", True, "60000.00000000", "0.00100000",
        )  # fmt: skip
        assert trade["t"] > 0
        assert trade["N"] == "BTC"
        assert trade["n"] == "0.00000100"
        assert trade["z"] == "0.00100000"
        assert trade["Z"] == "60.00000000"
        assert trade["Y"] == "60.00000000"
        assert trade["I"] > er["I"]
        assert trade["w"] is False
        # another order, cancelled: c is the cancel's id, C the order's
        client.signed("POST", "/api/v3/order", limit_buy(price="50000", newClientOrderId="ws-2"))
        await events(ws, 1, "executionReport")
        gone = client.signed(
            "DELETE",
            "/api/v3/order",
            {"symbol": "BTCUSDT", "origClientOrderId": "ws-2", "newClientOrderId": "k"},
        )
        assert gone.status_code == 200
        cancel = (await events(ws, 1, "executionReport"))[0]["event"]
        assert (cancel["x"], cancel["X"], cancel["c"], cancel["C"]) == ("CANCELED", "CANCELED", "k", "ws-2")


async def test_ioc_expiry_reports_expired_with_reason(sim: SimulatorServer, client: SignedClient) -> None:
    async with connect(url(sim)) as ws:
        await subscribe(sim, ws)
        client.signed("POST", "/api/v3/order", limit_buy(price="50000", timeInForce="IOC"))
        new, expired = await events(ws, 2, "executionReport")
        assert new["event"]["x"] == "NEW"
        assert (expired["event"]["x"], expired["event"]["eR"]) == ("EXPIRED", "UNFILLED_IOC_QUANTITY_EXPIRED")


async def test_unsubscribe_sends_event_stream_terminated(sim: SimulatorServer, client: SignedClient) -> None:
    async with connect(url(sim)) as ws:
        sub = await subscribe(sim, ws)
        not_there = await call(ws, "userDataStream.unsubscribe", {"subscriptionId": 7})
        assert not_there["error"]["code"] == -2036
        assert (await call(ws, "userDataStream.unsubscribe", {"subscriptionId": sub}))["result"] == {}
        ended = (await events(ws, 1))[0]
        assert ended["subscriptionId"] == sub
        assert ended["event"]["e"] == "eventStreamTerminated"
        assert (await subscribe(sim, ws)) == sub + 1  # ids are never reused on a connection


async def test_ed25519_logon_and_subscribe(sim: SimulatorServer, client: SignedClient) -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    sim.app.state.ws_api.register_ed25519("ed-key", pem)
    async with connect(url(sim)) as ws:
        assert (await call(ws, "userDataStream.subscribe"))["error"]["code"] == -2015  # not logged on
        hmac_logon = await call(ws, "session.logon", signed_params(sim))
        assert hmac_logon["error"]["code"] == -2015  # session.logon takes Ed25519 keys only
        params: dict[str, Any] = {"apiKey": "ed-key", "timestamp": sim.state.now_ms()}
        params["signature"] = base64.b64encode(private.sign(signature_payload(params))).decode()
        logon = await call(ws, "session.logon", params)
        assert logon["status"] == 200
        assert logon["result"]["apiKey"] == "ed-key"
        assert (await call(ws, "userDataStream.subscribe"))["result"] == {"subscriptionId": 0}
        client.signed("POST", "/api/v3/order", limit_buy(price="50000"))
        assert (await events(ws, 1, "executionReport"))[0]["event"]["x"] == "NEW"
        await call(ws, "session.logout")
        assert (await events(ws, 1, "eventStreamTerminated"))[0]["subscriptionId"] == 0


async def test_faults_duplicate_skip_reorder_delay(
    sim: SimulatorServer, client: SignedClient, admin: httpx.Client
) -> None:
    async with connect(url(sim)) as ws:
        await subscribe(sim, ws)

        async def place(cid: str) -> None:
            client.signed("POST", "/api/v3/order", limit_buy(price="50000", newClientOrderId=cid))

        assert admin.post("/_sim/ws_api/faults", json={"duplicate": 1}).status_code == 200
        await place("d")
        got = [m["event"] for m in await events(ws, 2, "executionReport")]
        assert [e["c"] for e in got] == ["d", "d"]
        assert got[0]["I"] == got[1]["I"]
        admin.post("/_sim/ws_api/faults", json={"skip": 1})
        await place("s1")  # the next event, s1's NEW report, is never sent
        await place("s2")
        assert [m["event"]["c"] for m in await events(ws, 1, "executionReport")] == ["s2"]
        admin.post("/_sim/ws_api/faults", json={"reorder": 1})
        await place("r1")  # NEW r1 is held back and the balance event of its placement overtakes it
        between = await recv_until_collect(ws, lambda m: m.get("event", {}).get("c") == "r1")
        # after s2's report: s2's balances, then r1's balances, then (late) r1's report
        assert [m["event"]["e"] for m in between] == ["outboundAccountPosition"] * 2 + ["executionReport"]
        admin.post("/_sim/ws_api/faults", json={"delay_ms": 300})
        loop = asyncio.get_running_loop()
        start = loop.time()
        await place("late")
        await events(ws, 1, "executionReport")
        assert loop.time() - start >= 0.25
        admin.delete("/_sim/ws_api/faults")
        assert admin.post("/_sim/ws_api/faults", json={"bogus": 1}).status_code == 400


async def test_fault_actions_terminate_shutdown_drop(sim: SimulatorServer, admin: httpx.Client) -> None:
    async with connect(url(sim)) as ws:
        sub = await subscribe(sim, ws)
        assert admin.post("/_sim/ws_api/faults", json={"terminate": True}).json()["terminated"] == 1
        ended = (await events(ws, 1))[0]
        assert ended == {
            "subscriptionId": sub,
            "event": {"e": "eventStreamTerminated", "E": ended["event"]["E"]},
        }
        assert admin.get("/_sim/ws_api").json()["connections"][0]["subscriptions"] == []
        await subscribe(sim, ws)
        admin.post("/_sim/ws_api/faults", json={"shutdown": 0.3})
        notice = json.loads(await ws.recv())
        assert set(notice) == {"event"}
        assert notice["event"]["e"] == "serverShutdown"
        with pytest.raises(ConnectionClosed):
            await recv_until(ws, lambda m: False, timeout=3)
    async with connect(url(sim)) as ws:
        await call(ws, "ping")
        assert admin.post("/_sim/ws_api/faults", json={"drop": True}).json()["dropped"] == 1
        with pytest.raises(ConnectionClosed):
            await recv_until(ws, lambda m: False, timeout=3)


async def test_connection_ends_at_its_lifetime() -> None:
    with SimulatorServer(KEY, SECRET, ws_max_lifetime_s=0.3) as sim:
        async with connect(url(sim)) as ws:
            await subscribe(sim, ws)
            with pytest.raises(ConnectionClosed):
                await recv_until(ws, lambda m: False, timeout=3)


async def test_request_weight_is_shared_with_rest() -> None:
    with SimulatorServer(KEY, SECRET, weight_limit=3) as sim:
        async with connect(url(sim)) as ws:
            await subscribe(sim, ws)  # weight 2
            await call(ws, "ping", rid=2)  # 3
            limited = await call(ws, "ping", rid=3)
            assert (limited["status"], limited["error"]["code"]) == (429, -1003)


async def test_server_stop_sends_server_shutdown() -> None:
    sim = SimulatorServer(KEY, SECRET).start()
    async with connect(url(sim)) as ws:
        await subscribe(sim, ws)
        await asyncio.to_thread(sim.stop)
        notice = await recv_until(ws, lambda m: "event" in m)
        assert notice["event"]["e"] == "serverShutdown"


async def test_clearing_all_faults_clears_stream_faults_and_releases_a_held_event(
    sim: SimulatorServer, client: SignedClient, admin: httpx.Client
) -> None:
    async with connect(url(sim)) as ws:
        await subscribe(sim, ws)
        admin.post("/_sim/ws_api/faults", json={"reorder": 1, "skip": 0, "delay_ms": 5})
        client.signed("POST", "/api/v3/order", limit_buy(price="50000", newClientOrderId="held"))
        await events(ws, 1, "outboundAccountPosition")  # the report itself is held back
        admin.delete("/_sim/faults").raise_for_status()
        assert admin.get("/_sim/ws_api").json()["faults"] == {
            "delay_ms": 0,
            "duplicate": 0,
            "skip": 0,
            "refuse": 0,
            "reorder": 0,
        }
        assert (await events(ws, 1, "executionReport"))[0]["event"]["c"] == "held"
