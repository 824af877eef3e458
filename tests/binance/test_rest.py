"""BinanceSpotClient over httpx.MockTransport: signing on the wire, -1021 resync-and-retry, unknown vs
unavailable transport failures, Retry-After, bounded in-flight requests."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qsl

import httpx
import pytest

from adapters.binance.governor import RateLimitGovernor
from adapters.binance.rest import BinanceSpotClient
from adapters.binance.signing import Secret
from engine.errors import ExchangeRejected, ExchangeUnavailable, ExecutionStatusUnknown
from tests.binance.helpers import API_KEY, BASE, SECRET, FakeVenue, error, ok

ORDER = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.001",
    "price": "50000.00",
    "newClientOrderId": "c-1",
}


def client_for(venue: FakeVenue, **kw: object) -> BinanceSpotClient:
    return BinanceSpotClient(
        "testnet", API_KEY, Secret(SECRET), BASE, transport=httpx.MockTransport(venue), **kw
    )  # type: ignore[arg-type]


async def test_signed_order_goes_in_the_query_signed_over_the_exact_bytes() -> None:
    venue = FakeVenue()
    venue.route("POST", "/api/v3/order", lambda r, p: ok({"echo": p, "body": r.content.decode()}))
    client = client_for(venue, recv_window_ms=7000)
    data = await client.order({**ORDER, "symbol": "这是测试币456"})
    req = venue.requests[-1]
    assert req.headers["X-MBX-APIKEY"] == API_KEY
    assert data["body"] == ""  # everything in the query string
    raw = req.url.query.decode()
    assert raw.startswith("symbol=%E8%BF%99")  # percent-encoded once
    assert "&recvWindow=7000&timestamp=" in raw
    assert data["echo"]["symbol"] == "这是测试币456"
    assert data["echo"]["signature"] == raw.rsplit("&signature=", 1)[1]
    await client.aclose()


async def test_bad_secret_is_rejected_as_invalid_signature() -> None:
    venue = FakeVenue()
    venue.route("GET", "/api/v3/account", lambda r, p: ok({}))
    client = BinanceSpotClient("testnet", API_KEY, "wrong", BASE, transport=httpx.MockTransport(venue))
    with pytest.raises(ExchangeRejected) as ei:
        await client.account()
    assert ei.value.reason == "INVALID_SIGNATURE"
    assert ei.value.code == -1022
    await client.aclose()


async def test_minus_1021_resyncs_once_and_retries_with_a_fresh_signature() -> None:
    skew = {"ms": 0}
    venue = FakeVenue(server_time_ms=lambda: int(time.time() * 1000) + skew["ms"])

    def handler(r: httpx.Request, p: dict[str, str]) -> httpx.Response:
        if skew["ms"] == 0:
            skew["ms"] = 5000  # the venue's clock jumped: our timestamps are now 5 s behind
            return error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return ok({"orderId": 7})

    venue.route("POST", "/api/v3/order", handler)
    client = client_for(venue)
    assert await client.order(ORDER) == {"orderId": 7}
    sent = [dict(parse_qsl(r.url.query.decode())) for r in venue.requests if r.url.path == "/api/v3/order"]
    assert len(sent) == 2
    assert sent[0]["signature"] != sent[1]["signature"]
    assert int(sent[1]["timestamp"]) - int(sent[0]["timestamp"]) >= 4900
    assert venue.count("GET", "/api/v3/time") == 2 * client.clock.samples  # first sync + one resync
    assert client.timestamp_retries == 1
    await client.aclose()


async def test_minus_1021_twice_gives_up_after_one_retry() -> None:
    venue = FakeVenue()
    venue.route("POST", "/api/v3/order", lambda r, p: error(400, -1021, "Timestamp ... 1000ms ahead"))
    client = client_for(venue)
    with pytest.raises(ExchangeRejected) as ei:
        await client.order(ORDER)
    assert ei.value.reason == "TIMESTAMP_OUT_OF_WINDOW"
    assert venue.count("POST", "/api/v3/order") == 2
    await client.aclose()


async def test_concurrent_minus_1021_share_one_resync() -> None:
    venue = FakeVenue()
    seen: set[str] = set()
    all_in = asyncio.Event()

    async def handler(r: httpx.Request, p: dict[str, str]) -> httpx.Response:
        cid = p["newClientOrderId"]
        if cid not in seen:
            seen.add(cid)
            if len(seen) == 5:
                all_in.set()
            await all_in.wait()  # all five are in flight together, then all fail
            return error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return ok({"clientOrderId": cid})

    venue.route("POST", "/api/v3/order", handler)
    client = client_for(venue)
    await client.server_time()
    await client.clock.resync()
    before = venue.count("GET", "/api/v3/time")
    out = await asyncio.gather(*(client.order({**ORDER, "newClientOrderId": f"c{i}"}) for i in range(5)))
    assert [o["clientOrderId"] for o in out] == [f"c{i}" for i in range(5)]
    assert venue.count("GET", "/api/v3/time") - before == client.clock.samples
    await client.aclose()


@pytest.mark.parametrize(
    ("failure", "expected", "reason"),
    [
        # the request left: the order may exist, so the outcome is unknown and nothing is resent
        (httpx.ReadTimeout, ExecutionStatusUnknown, "EXECUTION_STATUS_UNKNOWN"),
        # nothing left the machine: safe to call a plain "unavailable"
        (httpx.ConnectError, ExchangeUnavailable, "EXCHANGE_UNAVAILABLE"),
    ],
)
async def test_transport_failures_split_on_whether_the_request_was_sent(
    failure: type[httpx.TransportError], expected: type[Exception], reason: str
) -> None:
    venue = FakeVenue()

    def fail(r: httpx.Request, p: dict[str, str]) -> httpx.Response:
        raise failure("transport failed", request=r)

    venue.route("POST", "/api/v3/order", fail)
    client = client_for(venue)
    with pytest.raises(expected) as ei:
        await client.order(ORDER)
    assert ei.value.reason == reason  # type: ignore[attr-defined]
    assert isinstance(ei.value.__cause__, failure)
    assert venue.count("POST", "/api/v3/order") == 1
    await client.aclose()


@pytest.mark.parametrize(
    ("resp", "cls", "reason"),
    [
        (
            httpx.Response(502, text="<html>bad gateway</html>"),
            ExecutionStatusUnknown,
            "EXECUTION_STATUS_UNKNOWN",
        ),
        (
            error(400, -1007, "Timeout waiting for response from backend server."),
            ExecutionStatusUnknown,
            "EXECUTION_STATUS_UNKNOWN",
        ),
        (httpx.Response(200, text="not json"), ExecutionStatusUnknown, "EXECUTION_STATUS_UNKNOWN"),
        (
            error(400, -2010, "Account has insufficient balance for requested action."),
            ExchangeRejected,
            "INSUFFICIENT_BALANCE",
        ),
    ],
)
async def test_http_answers_are_mapped(resp: httpx.Response, cls: type, reason: str) -> None:
    venue = FakeVenue()
    venue.route("POST", "/api/v3/order", lambda r, p: resp)
    client = client_for(venue)
    with pytest.raises(cls) as ei:
        await client.order(ORDER)
    assert ei.value.reason == reason
    await client.aclose()


async def test_429_sets_retry_after_and_nothing_is_sent_meanwhile() -> None:
    venue = FakeVenue()
    venue.route(
        "GET",
        "/api/v3/ping",
        lambda r, p: error(
            429, -1003, "Too much request weight used", {"Retry-After": "30", "X-MBX-USED-WEIGHT-1M": "6001"}
        ),
    )
    client = client_for(venue)
    with pytest.raises(ExchangeUnavailable) as ei:
        await client.ping()
    assert ei.value.reason == "RATE_LIMIT"
    assert ei.value.retry_after_s == 30
    sent = len(venue.requests)
    with pytest.raises(ExchangeUnavailable) as ei2:
        await client.order(ORDER)
    assert ei2.value.reason == "RATE_LIMIT"
    assert len(venue.requests) == sent  # refused locally
    st = client.governor.status()
    assert st["level"] == "WARN"
    assert st["used"]["weight_1M"] == 6001
    await client.aclose()


async def test_418_bans_and_requires_hold() -> None:
    venue = FakeVenue()
    venue.route(
        "GET", "/api/v3/ping", lambda r, p: error(418, -1003, "IP banned until ...", {"Retry-After": "120"})
    )
    client = client_for(venue)
    with pytest.raises(ExchangeUnavailable) as ei:
        await client.ping()
    assert ei.value.reason == "IP_BANNED"
    assert client.governor.hold_required
    assert client.governor.status()["level"] == "ERROR"
    await client.aclose()


async def test_in_flight_requests_are_bounded_by_the_semaphore() -> None:
    venue = FakeVenue()
    state = {"now": 0, "peak": 0}
    release = asyncio.Event()

    async def slow(r: httpx.Request, p: dict[str, str]) -> httpx.Response:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await release.wait()
        state["now"] -= 1
        return ok({"symbol": p["symbol"]})

    venue.route("GET", "/api/v3/ticker/bookTicker", slow)
    client = client_for(venue, max_in_flight=3)
    tasks = [asyncio.create_task(client.book_ticker(f"S{i}")) for i in range(10)]
    while state["now"] < 3:
        await asyncio.sleep(0)
    for _ in range(20):  # give the other seven every chance to slip through
        await asyncio.sleep(0)
    assert state["now"] == 3
    release.set()
    out = await asyncio.gather(*tasks)
    assert [o["symbol"] for o in out] == [f"S{i}" for i in range(10)]
    assert state["peak"] == 3
    assert client.peak_in_flight == 3
    await client.aclose()


async def test_exchange_info_encodes_symbols_and_teaches_the_governor() -> None:
    venue = FakeVenue()
    limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}]
    venue.route("GET", "/api/v3/exchangeInfo", lambda r, p: ok({"rateLimits": limits, "symbols": [], "q": p}))
    gov = RateLimitGovernor()
    client = client_for(venue, governor=gov)
    data = await client.exchange_info(["BTCUSDT", "BNBBTC"])
    assert data["q"] == {"symbols": '["BTCUSDT","BNBBTC"]'}
    assert gov.status()["limits"] == {"weight_1M": 1200}
    assert gov.status()["used"]["weight_1M"] == 20
    await client.exchange_info(["BTCUSDT"])
    assert dict(parse_qsl(venue.requests[-1].url.query.decode())) == {"symbol": "BTCUSDT"}
    await client.aclose()


async def test_market_data_only_client_refuses_signed_calls_and_hides_secrets() -> None:
    venue = FakeVenue()
    client = BinanceSpotClient("testnet", "", "", BASE, transport=httpx.MockTransport(venue))
    with pytest.raises(ExchangeRejected) as ei:
        await client.account()
    assert ei.value.reason == "PERMISSION_DENIED"
    assert venue.requests == []
    await client.aclose()
    keyed = client_for(venue)
    assert SECRET not in repr(keyed)
    assert API_KEY not in repr(keyed)
    await keyed.aclose()


async def test_ed25519_client_signs_the_query_and_encodes_the_signature() -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    verified: list[bool] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/time":
            return ok({"serverTime": int(time.time() * 1000)})
        raw = request.url.query.decode()
        payload, _, wire_sig = raw.rpartition("&signature=")
        assert "+" not in wire_sig
        assert "/" not in wire_sig
        key.public_key().verify(base64.b64decode(dict(parse_qsl(raw))["signature"]), payload.encode())
        verified.append(True)
        return ok({"canTrade": True})

    client = BinanceSpotClient(
        "testnet", API_KEY, Secret(pem), BASE, transport=httpx.MockTransport(handler), key_type="ED25519"
    )
    for _ in range(8):
        assert await client.account() == {"canTrade": True}
    assert len(verified) == 8
    assert "PRIVATE KEY" not in repr(client)
    await client.aclose()


async def test_minus_1001_is_unknown_on_an_order_placement_and_unavailable_elsewhere() -> None:
    # errors.md -1001 DISCONNECTED: a placement may have reached the matching engine (reconcile by query)
    venue = FakeVenue()
    disconnected = error(400, -1001, "Internal error; unable to process your request. Please try again.")
    venue.route("POST", "/api/v3/order", lambda r, p: disconnected)
    venue.route("GET", "/api/v3/order", lambda r, p: disconnected)
    venue.route("DELETE", "/api/v3/order", lambda r, p: disconnected)
    client = client_for(venue)
    with pytest.raises(ExecutionStatusUnknown) as placed:
        await client.order(ORDER)
    assert placed.value.reason == "EXECUTION_STATUS_UNKNOWN"
    for call in (client.query_order, client.cancel):
        with pytest.raises(ExchangeUnavailable) as other:
            await call({"symbol": "BTCUSDT", "origClientOrderId": "c-1"})
        assert other.value.reason == "EXCHANGE_UNAVAILABLE"
    await client.aclose()


async def test_a_403_waf_answer_backs_the_governor_off() -> None:
    venue = FakeVenue()
    venue.route("GET", "/api/v3/ping", lambda r, p: httpx.Response(403, text="<html>WAF</html>"))
    client = client_for(venue)
    with pytest.raises(ExchangeUnavailable) as ei:
        await client.ping()
    assert ei.value.reason == "WAF_LIMIT"
    sent = len(venue.requests)
    with pytest.raises(ExchangeUnavailable) as again:
        await client.ping()
    assert again.value.reason == "WAF_LIMIT"
    assert len(venue.requests) == sent  # backing off: nothing sent
    await client.aclose()


async def test_self_trade_prevention_mode_is_sent_when_configured() -> None:
    venue = FakeVenue()
    seen: list[dict[str, str]] = []

    def capture(r: httpx.Request, p: dict[str, str]) -> httpx.Response:
        seen.append(p)
        return ok({"symbol": "BTCUSDT", "orderId": 1})

    venue.route("POST", "/api/v3/order", capture)
    venue.route("POST", "/api/v3/order/test", capture)
    plain = client_for(venue)
    await plain.order(ORDER)
    assert "selfTradePreventionMode" not in seen[-1]
    await plain.order(ORDER, self_trade_prevention_mode="EXPIRE_MAKER")  # per call
    assert seen[-1]["selfTradePreventionMode"] == "EXPIRE_MAKER"
    await plain.aclose()
    configured = client_for(venue, self_trade_prevention_mode="EXPIRE_BOTH")
    await configured.order(ORDER)
    assert seen[-1]["selfTradePreventionMode"] == "EXPIRE_BOTH"
    await configured.order_test(ORDER)
    assert seen[-1]["selfTradePreventionMode"] == "EXPIRE_BOTH"
    await configured.order(ORDER, self_trade_prevention_mode="NONE")
    assert seen[-1]["selfTradePreventionMode"] == "NONE"
    await configured.order({**ORDER, "selfTradePreventionMode": "DECREMENT"})  # the payload's own wins
    assert seen[-1]["selfTradePreventionMode"] == "DECREMENT"
    await configured.aclose()
