"""AiohttpTransport over real loopback sockets: bytes sent as signed, keep-alive, and failures split into
'not sent' (connect) versus 'maybe executed' (timeout or disconnect after sending)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from adapters.binance.errors import request_was_sent
from adapters.binance.rest import BinanceSpotClient
from adapters.binance.transport import AiohttpTransport
from engine.errors import ExchangeUnavailable, ExecutionStatusUnknown
from tests.binance.helpers import API_KEY, SECRET


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, dict[str, int]]]:
    peers: dict[str, int] = {}

    async def echo(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        peers[str(peer)] = peers.get(str(peer), 0) + 1
        return web.json_response({"raw_query": request.rel_url.raw_query_string, "method": request.method})

    async def time_(request: web.Request) -> web.Response:
        return web.json_response({"serverTime": 1_700_000_000_000})

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    async def drop(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()  # the request arrived; the answer never will
        await asyncio.sleep(0.05)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/api/v3/time", time_)
    app.router.add_route("*", "/api/v3/order", echo)
    app.router.add_get("/hang", hang)
    app.router.add_post("/drop", drop)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", peers
    await runner.cleanup()


RESERVED = "symbols=%5B%22A%22%2C%22B%22%5D&x=a%2Bb%2F%3D&u=%7E&sp=a+b"


async def test_query_bytes_are_sent_untouched_and_connections_are_reused(
    server: tuple[str, dict[str, int]],
) -> None:
    base, peers = server
    async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
        for _ in range(3):
            resp = await http.get(f"{base}/echo?{RESERVED}")
            assert resp.json()["raw_query"] == RESERVED
    assert sum(peers.values()) == 3
    assert len(peers) == 1  # keep-alive: one connection


async def test_signed_request_through_the_client_on_the_wire(server: tuple[str, dict[str, int]]) -> None:
    base, _ = server
    client = BinanceSpotClient("testnet", API_KEY, SECRET, {"rest": base, "ws": "ws://127.0.0.1:9"})
    data = await client.order({"symbol": "这是测试币456", "side": "BUY", "newClientOrderId": "a/b+c,d"})
    raw = data["raw_query"]
    assert data["method"] == "POST"
    assert raw.startswith("symbol=%E8%BF%99")
    assert "newClientOrderId=a%2Fb%2Bc%2Cd" in raw  # yarl would have turned %2F into /
    await client.aclose()


async def test_read_timeout_after_send_means_maybe_executed(server: tuple[str, dict[str, int]]) -> None:
    base, _ = server
    async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=httpx.Timeout(0.2)) as http:
        with pytest.raises(httpx.ReadTimeout) as ei:
            await http.get(f"{base}/hang")
    assert request_was_sent(ei.value)


async def test_disconnect_after_send_means_maybe_executed(server: tuple[str, dict[str, int]]) -> None:
    base, _ = server
    client = BinanceSpotClient("testnet", API_KEY, SECRET, {"rest": base, "ws": "ws://127.0.0.1:9"})
    with pytest.raises(ExecutionStatusUnknown) as ei:
        await client._request("POST", "/drop")
    assert ei.value.reason == "EXECUTION_STATUS_UNKNOWN"
    await client.aclose()


async def test_connect_refused_means_not_sent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    client = BinanceSpotClient("testnet", API_KEY, SECRET, {"rest": f"http://127.0.0.1:{port}", "ws": ""})
    with pytest.raises(ExchangeUnavailable) as ei:
        await client.ping()
    assert ei.value.reason == "EXCHANGE_UNAVAILABLE"
    await client.aclose()
