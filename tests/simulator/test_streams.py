"""Market streams over real WebSockets: raw and combined, control messages, pings, and the ws_drop, ws_stall,
ws_shutdown and ws_refuse faults."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from adapters.simulator.server import SimulatorServer
from tests.simulator.helpers import KEY, SECRET, SignedClient, drain_forever
from tests.waiting import eventually

BOOK_KEYS = {"u", "s", "b", "B", "a", "A"}
AGG_KEYS = {"e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"}


async def recv_until(ws: ClientConnection, pred: Callable[[Any], bool], timeout: float = 5.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if pred(msg):
                return msg


async def test_raw_book_ticker_stream(sim: SimulatorServer) -> None:
    async with connect(f"{sim.ws_url}/ws/btcusdt@bookTicker") as ws:
        first = json.loads(await ws.recv())
        second = json.loads(await ws.recv())
    assert set(first) == BOOK_KEYS  # no e/E on bookTicker
    assert first["s"] == "BTCUSDT"
    assert second["u"] > first["u"]
    assert all(isinstance(first[k], str) for k in "bBaA")


async def test_raw_agg_trade_stream_reports_our_fill(sim: SimulatorServer, client: SignedClient) -> None:
    async with connect(f"{sim.ws_url}/ws/ethusdt@aggTrade") as ws:
        order = {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.5"}
        market_print = await recv_until(ws, lambda m: m.get("e") == "aggTrade")  # the driver's prints
        placed = (await asyncio.to_thread(client.signed, "POST", "/api/v3/order", order)).json()
        fill = placed["fills"][0]
        msg = await recv_until(ws, lambda m: m["f"] == fill["tradeId"])
    assert set(market_print) == set(msg) == AGG_KEYS
    assert msg["s"] == "ETHUSDT"
    assert (msg["p"], msg["q"], msg["m"]) == (fill["price"], fill["qty"], False)  # we bought: buyer is taker


async def test_combined_stream_wraps_each_message(sim: SimulatorServer) -> None:
    seen: set[str] = set()
    async with connect(f"{sim.ws_url}/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker") as ws:
        async with asyncio.timeout(5):
            while seen != {"btcusdt@bookTicker", "ethusdt@bookTicker"}:
                msg = json.loads(await ws.recv())
                assert set(msg) == {"stream", "data"}
                assert msg["data"]["s"].lower() == msg["stream"].split("@")[0]
                seen.add(msg["stream"])


async def send(ws: ClientConnection, method: str, params: list[Any] | None, req_id: Any) -> Any:
    """Send one control message and return its answer (ticks arriving meanwhile are skipped)."""
    msg: dict[str, Any] = {"method": method, "id": req_id}
    if params is not None:
        msg["params"] = params
    await ws.send(json.dumps(msg))
    return await recv_until(ws, lambda m: m.get("id") == req_id and ("result" in m or "error" in m))


async def test_subscribe_list_and_combined_property(sim: SimulatorServer) -> None:
    async with connect(f"{sim.ws_url}/ws") as ws:
        assert await send(ws, "SUBSCRIBE", ["bnbusdt@bookTicker"], 1) == {"result": None, "id": 1}
        tick = await recv_until(ws, lambda m: "u" in m)
        assert tick["s"] == "BNBUSDT"
        assert await send(ws, "LIST_SUBSCRIPTIONS", None, "l-1") == {
            "result": ["bnbusdt@bookTicker"],
            "id": "l-1",
        }
        assert await send(ws, "SET_PROPERTY", ["combined", True], 2) == {"result": None, "id": 2}
        wrapped = await recv_until(ws, lambda m: "stream" in m)
        assert wrapped["stream"] == "bnbusdt@bookTicker"
        assert await send(ws, "GET_PROPERTY", ["combined"], 3) == {"result": True, "id": 3}


async def test_unsubscribe_and_bad_requests(sim: SimulatorServer) -> None:
    async with connect(f"{sim.ws_url}/ws/btcusdt@aggTrade") as ws:
        assert await send(ws, "UNSUBSCRIBE", ["btcusdt@aggTrade"], 1) == {"result": None, "id": 1}
        assert await send(ws, "LIST_SUBSCRIPTIONS", None, 2) == {"result": [], "id": 2}
        assert (await send(ws, "SET_PROPERTY", ["combined", "yes"], 3))["error"]["code"] == 1
        await ws.send("not json")
        assert (await recv_until(ws, lambda m: "error" in m))["error"]["code"] == 3


async def test_more_than_five_messages_a_second_disconnects(sim: SimulatorServer) -> None:
    async with connect(f"{sim.ws_url}/ws") as ws:
        for i in range(6):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        with pytest.raises(ConnectionClosed) as closed:
            await drain_forever(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008


async def test_connections_end_at_their_lifetime() -> None:
    with SimulatorServer(KEY, SECRET, ws_max_lifetime_s=0.3) as sim:
        async with connect(f"{sim.ws_url}/ws/btcusdt@bookTicker") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await drain_forever(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001


async def test_state_lists_clients_and_driver_stops_without_them(
    sim: SimulatorServer, client: SignedClient
) -> None:
    async with connect(f"{sim.ws_url}/ws/btcusdt@bookTicker"):
        clients = await asyncio.to_thread(
            eventually, lambda: client.raw("GET", "/_sim/state").json()["ws_clients"]
        )
        assert clients[0]["subscriptions"] == ["btcusdt@bookTicker"]
    hub = sim.state.hub
    assert hub is not None
    await asyncio.to_thread(
        eventually, lambda: not hub.conns and hub._driver is not None and hub._driver.done()
    )
    price = sim.state.engine.prices["BTCUSDT"]
    await asyncio.sleep(0.1)  # several driver intervals: a stopped driver leaves the price alone
    assert sim.state.engine.prices["BTCUSDT"] == price


async def test_ws_drop_closes_every_connection(sim: SimulatorServer, client: SignedClient) -> None:
    async with (
        connect(f"{sim.ws_url}/ws/btcusdt@bookTicker") as a,
        connect(f"{sim.ws_url}/stream?streams=x") as b,
    ):
        await a.recv()
        await asyncio.to_thread(
            eventually, lambda: len(client.raw("GET", "/_sim/state").json()["ws_clients"]) == 2
        )
        r = await asyncio.to_thread(client.raw, "POST", "/_sim/faults", json={"ws_drop": True})
        assert r.json()["ws_dropped"] == 2
        for ws in (a, b):
            with pytest.raises(ConnectionClosed):
                await drain_forever(ws)


async def test_ws_stall_keeps_socket_open_and_silent(sim: SimulatorServer, client: SignedClient) -> None:
    async with connect(f"{sim.ws_url}/ws/btcusdt@bookTicker") as ws:
        await ws.recv()
        await asyncio.to_thread(client.raw, "POST", "/_sim/faults", json={"ws_stall": 1.0})
        # whatever was already on the wire drains; then a 0.5 s silence must appear inside the stall
        async with asyncio.timeout(1.0):
            while True:
                try:
                    await asyncio.wait_for(ws.recv(), timeout=0.5)
                except TimeoutError:
                    break
        state = await asyncio.to_thread(lambda: client.raw("GET", "/_sim/state").json())
        assert len(state["ws_clients"]) == 1
        resumed = json.loads(await asyncio.wait_for(ws.recv(), timeout=3))
        assert resumed["s"] == "BTCUSDT"


async def _raw_ws(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-made WebSocket client that never answers pings, to watch the server's keepalive."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    status = await reader.readuntil(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101")
    return reader, writer


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return head[0] & 0x0F, await reader.readexactly(length)


async def test_server_pings_and_drops_a_silent_client() -> None:
    with SimulatorServer(KEY, SECRET, ws_ping_interval=0.2, ws_ping_timeout=0.4) as sim:
        reader, writer = await _raw_ws(sim.port, "/ws/btcusdt@bookTicker")
        opcodes: list[int] = []
        try:
            async with asyncio.timeout(5):
                while True:  # data frames, then a ping (0x9); no pong from us, so a close (0x8) or EOF
                    opcode, _ = await _read_frame(reader)
                    opcodes.append(opcode)
                    if opcode == 0x8:
                        break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()
        assert 0x1 in opcodes
        assert 0x9 in opcodes


async def test_ws_shutdown_announces_then_closes_after_the_notice(
    sim: SimulatorServer, client: SignedClient
) -> None:
    async with (
        connect(f"{sim.ws_url}/ws/btcusdt@bookTicker") as raw,
        connect(f"{sim.ws_url}/stream?streams=btcusdt@bookTicker") as combined,
    ):
        await raw.recv()
        await combined.recv()
        r = await asyncio.to_thread(client.raw, "POST", "/_sim/faults", json={"ws_shutdown": 0.3})
        assert r.json()["ws_dropped"] == 2
        notice = await recv_until(raw, lambda m: m.get("e") == "serverShutdown")
        assert set(notice) == {"e", "E"}  # the raw shape of web-socket-streams.md "Server Shutdown"
        wrapped = await recv_until(combined, lambda m: m.get("stream") == "!serverShutdown")
        assert wrapped["data"]["e"] == "serverShutdown"
        # during the notice a new connection works, and the old ones still deliver
        async with connect(f"{sim.ws_url}/ws/btcusdt@bookTicker") as fresh:
            assert json.loads(await fresh.recv())["s"] == "BTCUSDT"
            assert json.loads(await raw.recv())["s"] == "BTCUSDT"
            for ws in (raw, combined):
                with pytest.raises(ConnectionClosed):
                    await drain_forever(ws)


async def test_ws_refuse_rejects_handshakes_until_it_ends(sim: SimulatorServer, client: SignedClient) -> None:
    await asyncio.to_thread(client.raw, "POST", "/_sim/faults", json={"ws_refuse": 0.3})
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{sim.ws_url}/ws/btcusdt@bookTicker"):
            pass
    assert refused.value.response.status_code == 403
    await asyncio.sleep(0.35)
    async with connect(f"{sim.ws_url}/ws/btcusdt@bookTicker") as ws:
        assert json.loads(await ws.recv())["s"] == "BTCUSDT"
