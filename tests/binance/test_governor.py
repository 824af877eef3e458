"""RateLimitGovernor: calendar-aligned windows, header learning, throttling, Retry-After and bans."""

from __future__ import annotations

import pytest

from adapters.binance.governor import RateLimitGovernor
from engine.errors import ExchangeUnavailable
from tests.binance.helpers import ManualClock

LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 10},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 1000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300000},
]


def make(start: float = 1_700_000_040.0, **kw: object) -> tuple[RateLimitGovernor, ManualClock]:
    clock = ManualClock(start)
    gov = RateLimitGovernor(clock=clock, sleep=clock.sleep, rate_limits=LIMITS, **kw)  # type: ignore[arg-type]
    return gov, clock


def test_learns_limits_from_exchange_info() -> None:
    gov, _ = make()
    st = gov.status()
    assert st["limits"] == {"weight_1M": 100, "orders_10S": 10, "orders_1D": 1000}
    assert st["level"] == "OK"
    assert st["hold_required"] is False


async def test_reserves_weight_and_throttles_until_the_calendar_minute_rolls() -> None:
    gov, clock = make(threshold=0.9)
    clock.t = 1_699_999_980.0 + 45  # 45 s into a minute that starts at ...980 (divisible by 60)
    assert 1_699_999_980 % 60 == 0
    for _ in range(9):
        await gov.acquire(10)
    assert gov.status()["used"]["weight_1M"] == 90
    assert clock.slept == []
    await gov.acquire(10)  # 100 > 90: waits for :00 of the next minute, not 60 s from now
    assert clock.slept
    assert clock.slept[0] == pytest.approx(15.0, abs=0.01)
    assert gov.status()["used"]["weight_1M"] == 10
    assert gov.throttled_count == 1


async def test_header_counts_replace_the_local_estimate_case_insensitively() -> None:
    gov, clock = make()
    clock.t = 1_699_999_980.0
    ticket = await gov.acquire(1)
    gov.record(
        200,
        {"x-mbx-used-weight-1m": "85", "X-MBX-ORDER-COUNT-10S": "3", "X-MBX-ORDER-COUNT-1D": "400"},
        ticket,
    )
    st = gov.status()
    assert st["used"] == {"weight_1M": 85, "orders_10S": 3, "orders_1D": 400}
    ticket = await gov.acquire(4)
    # the venue is the truth, also when it reports less (0-weight successes, fills taking orders off)
    gov.record(200, {"X-MBX-USED-WEIGHT-1M": "20", "X-MBX-ORDER-COUNT-10S": "1"}, ticket)
    assert gov.status()["used"] == {"weight_1M": 20, "orders_10S": 1, "orders_1D": 400}
    await gov.acquire(4)
    assert clock.slept == []


async def test_a_lower_header_keeps_what_other_requests_still_have_in_flight() -> None:
    gov, clock = make()
    clock.t = 1_699_999_980.0
    first = await gov.acquire(10)
    await gov.acquire(30)  # still in flight: the venue may not have counted it yet
    assert gov.status()["used"]["weight_1M"] == 40
    gov.record(200, {"X-MBX-USED-WEIGHT-1M": "5"}, first)
    assert gov.status()["used"]["weight_1M"] == 35  # 5 counted by the venue + 30 on their way


async def test_a_released_ticket_stays_counted_until_the_venue_says_otherwise() -> None:
    gov, clock = make()
    clock.t = 1_699_999_980.0
    lost = await gov.acquire(10)
    gov.release(lost)  # no answer: it may have been counted
    assert gov.status()["used"]["weight_1M"] == 10
    other = await gov.acquire(1)
    gov.record(200, {"X-MBX-USED-WEIGHT-1M": "3"}, other)
    assert gov.status()["used"]["weight_1M"] == 3


async def test_minus_1015_blocks_new_orders_only() -> None:
    # faqs/order_count_decrement.md: on 429 -1015 "stop sending orders until the interval expires"
    gov, clock = make()
    clock.t = 1_700_000_000.0 + 4
    gov.record(429, {"Retry-After": "6"}, code=-1015)
    with pytest.raises(ExchangeUnavailable) as ei:
        await gov.acquire(1, orders=1)
    assert ei.value.reason == "RATE_LIMIT"
    assert ei.value.retry_after_s == pytest.approx(6.0)
    await gov.acquire(1)  # a cancel
    await gov.acquire(4)  # a query
    assert gov.status()["level"] == "WARN"
    assert gov.status()["orders_blocked_s"] == pytest.approx(6.0)
    clock.t += 6.1
    await gov.acquire(1, orders=1)
    assert clock.slept == []


async def test_minus_1015_without_retry_after_waits_out_the_order_window() -> None:
    gov, clock = make()
    clock.t = 1_700_000_000.0 + 3
    gov.record(429, {"X-MBX-ORDER-COUNT-10S": "10"}, code=-1015)
    with pytest.raises(ExchangeUnavailable) as ei:
        await gov.acquire(1, orders=1)
    assert ei.value.retry_after_s == pytest.approx(7.0)


async def test_a_weight_429_blocks_every_request() -> None:
    gov, _ = make()
    gov.record(429, {"Retry-After": "5"}, code=-1003)
    for weight, orders in ((1, 0), (1, 1), (0, 0)):
        with pytest.raises(ExchangeUnavailable):
            await gov.acquire(weight, orders)


async def test_403_waf_backs_off_doubling_and_resets_on_another_answer() -> None:
    gov, clock = make(waf_backoff_s=2.0)
    gov.record(403, {})
    with pytest.raises(ExchangeUnavailable) as ei:
        await gov.acquire(1)
    assert ei.value.reason == "WAF_LIMIT"
    assert ei.value.retry_after_s == pytest.approx(2.0)
    clock.t += 2.1
    gov.record(403, {})
    with pytest.raises(ExchangeUnavailable) as ei:
        await gov.acquire(1)
    assert ei.value.retry_after_s == pytest.approx(4.0)
    clock.t += 4.1
    gov.record(200, {})
    gov.record(403, {"Retry-After": "1"})
    with pytest.raises(ExchangeUnavailable) as ei:
        await gov.acquire(1)
    assert ei.value.retry_after_s == pytest.approx(1.0)
    assert gov.status()["level"] == "WARN"


async def test_order_count_window_of_ten_seconds() -> None:
    gov, clock = make()
    clock.t = 1_700_000_000.0 + 3  # 3 s into a 10 s window
    for _ in range(9):
        await gov.acquire(1, orders=1)
    await gov.acquire(1, orders=1)
    assert clock.slept == [pytest.approx(7.0, abs=0.01)]
    # a weight-only request never waits on the order windows
    await gov.acquire(1)
    assert len(clock.slept) == 1


async def test_refuses_instead_of_waiting_longer_than_max_wait() -> None:
    gov, clock = make(max_wait_s=30)
    clock.t = 1_700_006_400.0  # start of a UTC day
    gov.record(200, {"X-MBX-ORDER-COUNT-1D": "900"})
    with pytest.raises(ExchangeUnavailable) as ei:
        await gov.acquire(1, orders=1)
    assert ei.value.reason == "RATE_LIMIT"
    assert ei.value.retry_after_s is not None
    assert ei.value.retry_after_s > 30
    assert clock.slept == []


async def test_429_retry_after_refuses_without_sending_then_clears() -> None:
    gov, clock = make()
    gov.record(429, {"Retry-After": "12"})
    st = gov.status()
    assert st["level"] == "WARN"
    assert st["retry_after_s"] == pytest.approx(12.0)
    with pytest.raises(ExchangeUnavailable) as ei:
        await gov.acquire(1)
    assert ei.value.reason == "RATE_LIMIT"
    assert ei.value.retry_after_s == pytest.approx(12.0)
    clock.t += 12.5
    await gov.acquire(1)
    assert gov.status()["level"] == "OK"


async def test_429_without_retry_after_waits_out_the_minute() -> None:
    gov, clock = make()
    clock.t = 1_699_999_980.0 + 50
    gov.record(429, {})
    with pytest.raises(ExchangeUnavailable):
        await gov.acquire(1)
    clock.t += 10.01
    await gov.acquire(1)


async def test_418_ban_is_error_with_hold_until_it_ends() -> None:
    gov, clock = make()
    gov.record(418, {"retry-after": "120"})
    st = gov.status()
    assert st["level"] == "ERROR"
    assert st["hold_required"] is True
    assert gov.hold_required
    assert st["banned_until"] == pytest.approx(clock.t + 120)
    with pytest.raises(ExchangeUnavailable) as ei:
        await gov.acquire(1)
    assert ei.value.reason == "IP_BANNED"
    clock.t += 119
    assert gov.hold_required
    clock.t += 2
    assert not gov.hold_required
    assert gov.status()["level"] == "OK"
    await gov.acquire(1)


def test_near_limit_is_warn() -> None:
    gov, _ = make()
    gov.record(200, {"X-MBX-USED-WEIGHT-1M": "95"})
    assert gov.status()["level"] == "WARN"


def test_threshold_must_be_a_fraction() -> None:
    with pytest.raises(ValueError):
        RateLimitGovernor(threshold=1.5)
