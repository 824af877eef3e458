"""Weight headers, calendar-aligned windows, 429 → 418 escalation, order counts (fake clock, real sockets)."""

from __future__ import annotations

import pytest

from adapters.simulator.weights import RateLimited, RateLimiter
from tests.simulator.helpers import START_MS, FakeClock, SignedClient, limit_buy


def used(r: object) -> int:
    return int(r.headers["X-MBX-USED-WEIGHT-1M"])  # type: ignore[attr-defined]


def test_limiter_escalates_bans_and_caps_at_three_days() -> None:
    lim = RateLimiter(weight_limit=1, ban_base_s=120)
    now = START_MS
    durations = []
    for _ in range(14):
        now += 60_000 * 60 * 24 * 4  # past any ban, new window
        lim.admit("ip", now, 1)
        with pytest.raises(RateLimited) as over:
            lim.admit("ip", now, 1)
        assert over.value.http_status == 429
        with pytest.raises(RateLimited) as banned:
            lim.admit("ip", now + 1, 0)
        assert banned.value.http_status == 418
        durations.append(banned.value.retry_after_s)
    assert durations[:3] == [120, 240, 480]
    assert durations[-1] == 3 * 86_400


def test_weight_headers_per_endpoint(fake_client: SignedClient) -> None:
    assert used(fake_client.get("/api/v3/ping")) == 1
    assert used(fake_client.get("/api/v3/time")) == 2
    assert used(fake_client.signed("GET", "/api/v3/account")) == 22
    assert used(fake_client.get("/api/v3/ticker/bookTicker", symbol="BTCUSDT")) == 24
    assert used(fake_client.get("/api/v3/depth", symbol="BTCUSDT", limit="5")) == 29
    assert used(fake_client.signed("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})) == 35


def test_successful_orders_are_free_and_failed_ones_pay(fake_client: SignedClient) -> None:
    ok = fake_client.signed("POST", "/api/v3/order", limit_buy())
    assert ok.status_code == 200
    assert used(ok) == 0
    assert (ok.headers["X-MBX-ORDER-COUNT-10S"], ok.headers["X-MBX-ORDER-COUNT-1D"]) == ("1", "1")
    bad = fake_client.signed("POST", "/api/v3/order", limit_buy(qty="0.0000001"))
    assert bad.status_code == 400
    assert used(bad) == 1
    cancel = fake_client.signed(
        "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": str(ok.json()["orderId"])}
    )
    assert (cancel.status_code, used(cancel)) == (200, 1)
    unknown = fake_client.signed("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": "999"})
    assert (unknown.json()["code"], used(unknown)) == (-2011, 2)


def test_weight_window_is_calendar_aligned(fake_client: SignedClient, clock: FakeClock) -> None:
    fake_client.get("/api/v3/exchangeInfo")
    clock.advance(58_000)  # 12:00:59, same minute
    assert used(fake_client.get("/api/v3/ping")) == 21
    clock.advance(1_000)  # 12:01:00, new minute
    assert used(fake_client.get("/api/v3/ping")) == 1


def test_429_then_418_with_escalating_retry_after(fake_client: SignedClient, clock: FakeClock) -> None:
    # limit 60: three exchangeInfo calls (20 each) fill it, the fourth is over
    for _ in range(3):
        assert fake_client.get("/api/v3/exchangeInfo").status_code == 200
    over = fake_client.get("/api/v3/exchangeInfo")
    assert over.status_code == 429
    assert over.json()["code"] == -1003
    assert over.headers["Retry-After"] == "59"  # until 12:01:00
    assert used(over) == 80
    clock.advance(1000)
    ban = fake_client.get("/api/v3/ping")  # ignored Retry-After
    assert ban.status_code == 418
    assert ban.json()["code"] == -1003
    assert "IP banned until" in ban.json()["msg"]
    assert ban.headers["Retry-After"] == "120"
    clock.advance(60_000)
    still = fake_client.get("/api/v3/ping")
    assert (still.status_code, still.headers["Retry-After"]) == (418, "60")
    clock.advance(60_000)  # ban over, new window
    assert fake_client.get("/api/v3/ping").status_code == 200
    for _ in range(2):
        fake_client.get("/api/v3/exchangeInfo")
    assert fake_client.get("/api/v3/exchangeInfo").status_code == 429
    second_ban = fake_client.get("/api/v3/ping")
    assert (second_ban.status_code, second_ban.headers["Retry-After"]) == (418, "240")


def test_order_count_limit_and_window(fake_client: SignedClient, clock: FakeClock) -> None:
    counts = []
    for i in range(3):
        r = fake_client.signed("POST", "/api/v3/order", limit_buy(price=str(60000 + i)))
        counts.append(r.headers["X-MBX-ORDER-COUNT-10S"])
    assert counts == ["1", "2", "3"]
    over = fake_client.signed("POST", "/api/v3/order", limit_buy(price="59000"))
    assert over.status_code == 429
    assert over.json() == {
        "code": -1015,
        "msg": "Too many new orders; current limit is 3 orders per 10 SECOND.",
    }
    assert over.headers["Retry-After"] == "9"
    limits = fake_client.signed("GET", "/api/v3/rateLimit/order").json()
    assert [(x["interval"], x["limit"], x["count"]) for x in limits] == [("SECOND", 3, 3), ("DAY", 200000, 3)]
    clock.advance(9_000)  # 12:00:10: a new 10-second window, the day count stays
    again = fake_client.signed("POST", "/api/v3/order", limit_buy(price="59000"))
    assert again.status_code == 200
    assert (again.headers["X-MBX-ORDER-COUNT-10S"], again.headers["X-MBX-ORDER-COUNT-1D"]) == ("1", "4")


def test_exchange_info_advertises_enforced_limits(fake_client: SignedClient) -> None:
    limits = fake_client.get("/api/v3/exchangeInfo").json()["rateLimits"]
    assert {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 60} in limits
    assert {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 3} in limits


def test_orders_that_trade_leave_the_unfilled_count(fake_client: SignedClient) -> None:
    market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
    for _ in range(5):  # limit is 3 per 10 s, but filled orders do not count
        r = fake_client.signed("POST", "/api/v3/order", market)
        assert r.status_code == 200, r.text
        assert r.headers["X-MBX-ORDER-COUNT-10S"] == "0"
    rejected = fake_client.signed("POST", "/api/v3/order", limit_buy(qty="100"))  # insufficient balance
    assert rejected.json()["code"] == -2010
    resting = [
        fake_client.signed("POST", "/api/v3/order", limit_buy(price=p)) for p in ("64000", "63000", "62000")
    ]
    assert [r.headers["X-MBX-ORDER-COUNT-10S"] for r in resting] == ["1", "2", "3"]
    assert fake_client.signed("POST", "/api/v3/order", limit_buy(price="61000")).status_code == 429
    # the market falls through the best resting buy: its first (partial) fill frees one slot
    fake_client.raw("POST", "/_sim/price", json={"symbol": "BTCUSDT", "price": "63500"})
    freed = fake_client.signed("POST", "/api/v3/order", limit_buy(price="61000"))
    assert (freed.status_code, freed.headers["X-MBX-ORDER-COUNT-10S"]) == (200, "3")
