"""Request-weight and order-count accounting with Binance's 429 → 418 escalation (rest-api.md "LIMITS").

Weight is counted per IP in calendar-aligned one-minute windows; the unfilled-order count is per account
(the simulator has one) in 10-second and one-day windows. Over the weight limit the IP gets 429 with
Retry-After up to the end of the window; any request before that moment earns an IP ban (418) that
doubles from `ban_base_s` up to three days on each repeat. All times are injected epoch milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from adapters.venue.errors import VenueError

MINUTE_MS = 60_000
TEN_SECONDS_MS = 10_000
DAY_MS = 86_400_000
MAX_BAN_S = 3 * 86_400


class RateLimited(VenueError):
    """A 429 or 418 answer; `retry_after_s` goes into the Retry-After header."""

    def __init__(self, code: int, msg: str, http_status: int, retry_after_s: int) -> None:
        super().__init__(code, msg, http_status=http_status)
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class _IpState:
    window_start: int = 0
    used: int = 0
    retry_after_until: int = 0  # end of the current 429 period
    banned_until: int = 0
    bans: int = 0


@dataclass(slots=True)
class _Counter:
    window_ms: int
    window_start: int = 0
    count: int = 0

    def roll(self, now_ms: int) -> None:
        start = now_ms - now_ms % self.window_ms
        if start != self.window_start:
            self.window_start, self.count = start, 0


def _seconds_until(until_ms: int, now_ms: int) -> int:
    return max(1, math.ceil((until_ms - now_ms) / 1000))


@dataclass
class RateLimiter:
    weight_limit: int = 6000
    order_limit_10s: int = 100
    order_limit_1d: int = 200_000
    ban_base_s: int = 120
    _ips: dict[str, _IpState] = field(default_factory=dict)
    _global_ban_until: int = 0
    _orders_10s: _Counter = field(default_factory=lambda: _Counter(TEN_SECONDS_MS))
    _orders_1d: _Counter = field(default_factory=lambda: _Counter(DAY_MS))

    def _ip(self, ip: str, now_ms: int) -> _IpState:
        st = self._ips.setdefault(ip, _IpState())
        start = now_ms - now_ms % MINUTE_MS
        if start != st.window_start:
            st.window_start, st.used = start, 0
        return st

    def _banned(self, st: _IpState, now_ms: int) -> RateLimited:
        return RateLimited(
            -1003,
            f"Way too much request weight used; IP banned until {st.banned_until}. "
            "Please use WebSocket Streams for live updates to avoid bans.",
            418,
            _seconds_until(st.banned_until, now_ms),
        )

    def ban_everyone(self, now_ms: int, seconds: float) -> None:
        """Ban every IP for `seconds` (the fault injector's forced 418)."""
        self._global_ban_until = now_ms + int(seconds * 1000)

    def clear_bans(self) -> None:
        self._global_ban_until = 0
        for st in self._ips.values():
            st.banned_until = st.retry_after_until = st.bans = 0

    def admit(self, ip: str, now_ms: int, weight: int) -> None:
        """Charge `weight` before the request runs.

        Raises:
            RateLimited: 418 while banned or when the IP ignores a 429's Retry-After; 429 over the limit.
        """
        st = self._ip(ip, now_ms)
        if now_ms < self._global_ban_until:
            st.banned_until = max(st.banned_until, self._global_ban_until)
        if now_ms < st.banned_until:
            raise self._banned(st, now_ms)
        if now_ms < st.retry_after_until:
            ban_s = min(self.ban_base_s * 2**st.bans, MAX_BAN_S)
            st.bans += 1
            st.banned_until = now_ms + ban_s * 1000
            st.retry_after_until = 0
            raise self._banned(st, now_ms)
        st.used += weight
        if st.used > self.weight_limit:
            st.retry_after_until = st.window_start + MINUTE_MS
            raise RateLimited(
                -1003,
                f"Too much request weight used; current limit is {self.weight_limit} request weight "
                "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                429,
                _seconds_until(st.retry_after_until, now_ms),
            )

    def charge(self, ip: str, now_ms: int, weight: int) -> None:
        """Add weight known only after the request ran (failed orders pay, successful ones do not)."""
        self._ip(ip, now_ms).used += weight

    def used_weight(self, ip: str, now_ms: int) -> int:
        return self._ip(ip, now_ms).used

    def admit_order(self, now_ms: int) -> None:
        """Check the unfilled-order count before a new order reaches the engine.

        Raises:
            RateLimited: -1015 with HTTP 429 when a window is full.
        """
        for counter, limit, label in (
            (self._orders_10s, self.order_limit_10s, "10 SECOND"),
            (self._orders_1d, self.order_limit_1d, "1 DAY"),
        ):
            counter.roll(now_ms)
            if counter.count >= limit:
                end = counter.window_start + counter.window_ms
                raise RateLimited(
                    -1015,
                    f"Too many new orders; current limit is {limit} orders per {label}.",
                    429,
                    _seconds_until(end, now_ms),
                )

    def count_order(self, now_ms: int, delta: int = 1) -> None:
        """Add to (or, with delta=-1, take from) the unfilled-order count of every window, never below 0.

        Binance takes one off every window when an order first trades (faqs/order_count_decrement.md).
        """
        for counter in (self._orders_10s, self._orders_1d):
            counter.roll(now_ms)
            counter.count = max(0, counter.count + delta)

    def order_counts(self, now_ms: int) -> tuple[int, int]:
        self._orders_10s.roll(now_ms)
        self._orders_1d.roll(now_ms)
        return self._orders_10s.count, self._orders_1d.count

    def rate_limits(self) -> list[dict[str, object]]:
        """The `rateLimits` array of exchangeInfo, matching what this limiter enforces."""
        return [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": self.weight_limit,
            },
            {
                "rateLimitType": "ORDERS",
                "interval": "SECOND",
                "intervalNum": 10,
                "limit": self.order_limit_10s,
            },
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": self.order_limit_1d},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300_000},
        ]

    def order_rate_limits(self, now_ms: int) -> list[dict[str, object]]:
        """The answer of GET /api/v3/rateLimit/order."""
        c10, c1d = self.order_counts(now_ms)
        return [
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": self.order_limit_10s,
             "count": c10},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": self.order_limit_1d,
             "count": c1d},
        ]  # fmt: skip

    def snapshot(self, now_ms: int) -> dict[str, object]:
        return {
            "weight_limit": self.weight_limit,
            "ips": {
                ip: {"used_weight_1m": self._ip(ip, now_ms).used, "banned_until": st.banned_until,
                     "retry_after_until": st.retry_after_until, "bans": st.bans}
                for ip, st in list(self._ips.items())
            },
            "order_count_10s": self.order_counts(now_ms)[0],
            "order_count_1d": self.order_counts(now_ms)[1],
        }  # fmt: skip
