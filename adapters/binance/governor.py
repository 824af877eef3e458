"""Client-side rate-limit governor for Binance REST (rest-api.md "LIMITS", faqs/order_count_decrement.md).

Before each request it reserves the request's weight (and order count) in every calendar-aligned window
(1 MINUTE resets at :00, 10 SECOND at :00/:10/…, 1 DAY at 00:00 UTC). A request that would push a window
past `threshold` × limit waits for the window to roll over; one that would wait longer than `max_wait_s`
is refused without sending.

The venue's counters are the truth (rest-api.md "LIMITS": X-MBX-USED-WEIGHT-(n)(letter) on every answer,
X-MBX-ORDER-COUNT-(n)(letter) on successful orders): when an answer reports a count, the window adopts it,
lower than our estimate or higher (the venue counts every process on our IP/account, takes fills off the
unfilled-order count, faqs/order_count_decrement.md, and charges 0 weight for a successful order or cancel
since 2026-04-02, CHANGELOG.md 2026-03-27), plus what other requests still in flight have reserved. Each
`acquire` returns a Ticket; `record(..., ticket)` / `release(ticket)` take its reservation out of flight.

Blocks, each refusing without sending:
  * 418 (IP ban, Retry-After = until the ban ends): everything.
  * 429 with -1015 (too many new orders: the account's ORDERS limit, faqs/order_count_decrement.md "stop
    sending orders until the affected rate limit interval expires"): new orders only; cancels, queries
    and everything else go on.
  * any other 429 (REQUEST_WEIGHT, -1003): every request until Retry-After; Binance bans an IP that sends
    anything before then (rest-api.md "IP Limits"), and even 0-weight endpoints pay when they fail.
  * 403 (a WAF rule, rest-api.md "HTTP Return Codes"): everything, for Retry-After if given, else a backoff
    that doubles from `waf_backoff_s` on each consecutive 403 (capped at 300 s); any other answer resets it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from adapters.binance.errors import Reason
from engine.errors import ExchangeUnavailable

_UNIT_S = {"S": 1, "M": 60, "H": 3600, "D": 86400}
_INTERVAL_LETTER = {"SECOND": "S", "MINUTE": "M", "HOUR": "H", "DAY": "D"}


_ORDER_LIMIT_CODE = -1015
_MAX_WAF_BACKOFF_S = 300.0


@dataclass
class Ticket:
    """What one `acquire` reserved, per window (kind, label) with that window's start."""

    weight: int
    orders: int
    reserved: dict[tuple[str, str], tuple[float, int]]
    open: bool = True


@dataclass
class _Window:
    kind: str  # "weight" | "orders"
    label: str  # header suffix, e.g. "1M", "10S", "1D"
    seconds: int
    limit: int
    start: float = 0.0
    used: int = 0
    pending: int = 0  # reserved by requests still in flight (included in `used`)

    def roll(self, now: float) -> None:
        start = math.floor(now / self.seconds) * self.seconds  # epoch-aligned = calendar-aligned in UTC
        if start != self.start:
            self.start, self.used, self.pending = start, 0, 0


# Used until exchangeInfo is learned (documented live values; read the real ones from exchangeInfo)
DEFAULT_RATE_LIMITS: tuple[dict[str, Any], ...] = (
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
)


class RateLimitGovernor:
    """Throttles before the venue's limits and honours Retry-After; `status()` feeds /api/status."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        threshold: float = 0.9,
        max_wait_s: float = 65.0,
        rate_limits: Iterable[Mapping[str, Any]] = DEFAULT_RATE_LIMITS,
        waf_backoff_s: float = 5.0,
    ) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], was {threshold}")
        self._clock = clock
        self._sleep = sleep
        self.threshold = threshold
        self.max_wait_s = max_wait_s
        self._windows: list[_Window] = []
        self.retry_until: float | None = None  # 429 Retry-After end, epoch seconds
        self.banned_until: float | None = None  # 418 ban end, epoch seconds
        self.orders_blocked_until: float | None = None  # 429 -1015 end: new orders only, epoch seconds
        self.waf_until: float | None = None  # 403 backoff end, epoch seconds
        self.waf_backoff_s = waf_backoff_s
        self._waf_strikes = 0
        self.throttled_count = 0
        self.learn(rate_limits)

    def learn(self, rate_limits: Iterable[Mapping[str, Any]]) -> None:
        """Adopt the limits from exchangeInfo `rateLimits` (REQUEST_WEIGHT and ORDERS; RAW_REQUESTS ignored)."""
        old = {(w.kind, w.label): w for w in self._windows}
        windows = []
        for rl in rate_limits:
            kind = {"REQUEST_WEIGHT": "weight", "ORDERS": "orders"}.get(str(rl.get("rateLimitType")))
            letter = _INTERVAL_LETTER.get(str(rl.get("interval")))
            if kind is None or letter is None:
                continue
            num = int(rl.get("intervalNum", 1))
            label = f"{num}{letter}"
            win = _Window(kind, label, num * _UNIT_S[letter], int(rl["limit"]))
            if (prev := old.get((kind, label))) is not None:
                win.start, win.used, win.pending = prev.start, prev.used, prev.pending
            windows.append(win)
        if windows:
            self._windows = windows

    async def acquire(self, weight: int, orders: int = 0, *, priority: bool = False) -> Ticket:
        """Reserve `weight` (and `orders`) before sending; awaits a window roll-over when needed.

        A `priority` request (a cancel) may use the headroom between `threshold` × limit and the limit
        itself, so cancels still go out while ordinary requests wait for the window to roll.
        Hand the Ticket back with `record` (an answer came) or `release` (nothing came back).

        Raises:
            ExchangeUnavailable: RATE_LIMIT, IP_BANNED or WAF_LIMIT while a block is in force (see the
                module docstring), or when the wait for headroom would exceed max_wait_s. Nothing was sent.
        """
        while True:
            now = self._clock()
            self.check(orders=orders)
            wait = 0.0
            share = 1.0 if priority else self.threshold
            for win in self._windows:
                win.roll(now)
                cost = weight if win.kind == "weight" else orders
                if cost and win.used + cost > share * win.limit:
                    wait = max(wait, win.start + win.seconds - now)
            if wait <= 0:
                reserved: dict[tuple[str, str], tuple[float, int]] = {}
                for win in self._windows:
                    cost = weight if win.kind == "weight" else orders
                    win.used += cost
                    win.pending += cost
                    reserved[(win.kind, win.label)] = (win.start, cost)
                return Ticket(weight, orders, reserved)
            if wait > self.max_wait_s:
                raise ExchangeUnavailable(
                    f"rate limit headroom comes back in {wait:.0f}s, more than {self.max_wait_s:.0f}s",
                    reason=Reason.RATE_LIMIT.value,
                    retry_after_s=wait,
                )
            self.throttled_count += 1
            await self._sleep(wait + 0.001)

    def check(self, *, orders: int = 0) -> None:
        """Refuse now if a block applies to this request (a new order when `orders` > 0).

        Raises:
            ExchangeUnavailable: as for `acquire`.
        """
        self._refuse_if_blocked(self._clock(), orders)

    def release(self, ticket: Ticket | None, *, sent: bool = True) -> None:
        """Take a reservation out of flight without an answer. It stays counted when it may have reached
        the venue (`sent`); one refused before sending gives its reservation back."""
        if ticket is None or not ticket.open:
            return
        ticket.open = False
        now = self._clock()
        for win in self._windows:
            win.roll(now)
            start, cost = ticket.reserved.get((win.kind, win.label), (None, 0))
            if cost and start == win.start:
                win.pending = max(0, win.pending - cost)
                if not sent:
                    win.used = max(0, win.used - cost)

    def _refuse_if_blocked(self, now: float, orders: int = 0) -> None:
        if self.banned_until is not None and now < self.banned_until:
            left = self.banned_until - now
            raise ExchangeUnavailable(
                f"IP banned for another {left:.0f}s; nothing sent",
                reason=Reason.IP_BANNED.value,
                retry_after_s=left,
            )
        if self.retry_until is not None and now < self.retry_until:
            left = self.retry_until - now
            raise ExchangeUnavailable(
                f"Retry-After in force for another {left:.1f}s; nothing sent",
                reason=Reason.RATE_LIMIT.value,
                retry_after_s=left,
            )
        if self.waf_until is not None and now < self.waf_until:
            left = self.waf_until - now
            raise ExchangeUnavailable(
                f"WAF (HTTP 403) backoff for another {left:.1f}s; nothing sent",
                reason=Reason.WAF_LIMIT.value,
                retry_after_s=left,
            )
        if orders and self.orders_blocked_until is not None and now < self.orders_blocked_until:
            left = self.orders_blocked_until - now
            raise ExchangeUnavailable(
                f"too many new orders (-1015) for another {left:.1f}s; no new order sent",
                reason=Reason.RATE_LIMIT.value,
                retry_after_s=left,
            )

    def record(
        self,
        status_code: int,
        headers: Mapping[str, str],
        ticket: Ticket | None = None,
        *,
        code: int | None = None,
    ) -> None:
        """Learn from one response to `ticket`'s request: the venue's counters, and 429/418/403 with
        Retry-After (seconds). `code` is the answer's Binance error code (-1015 on a 429 blocks orders only).
        """
        now = self._clock()
        self.release(ticket)
        lower = {k.lower(): v for k, v in headers.items()}
        for win in self._windows:
            win.roll(now)
            prefix = "x-mbx-used-weight-" if win.kind == "weight" else "x-mbx-order-count-"
            raw = lower.get(prefix + win.label.lower())
            if raw is not None and raw.strip().isdigit():
                # the venue's count, plus what is still on its way to the venue
                win.used = int(raw) + win.pending
        retry_after = _parse_retry_after(lower.get("retry-after"))
        if status_code == 403:
            self._waf_strikes += 1
            backoff = min(self.waf_backoff_s * 2 ** (self._waf_strikes - 1), _MAX_WAF_BACKOFF_S)
            self.waf_until = max(self.waf_until or 0.0, now + (retry_after or backoff))
            return
        self._waf_strikes = 0
        if status_code == 429 and code == _ORDER_LIMIT_CODE:
            if retry_after is None:
                # No header: wait out the order window that is full (the shortest one over threshold)
                full = [w for w in self._windows if w.kind == "orders" and w.used >= self.threshold * w.limit]
                short = min(full or [w for w in self._windows if w.kind == "orders"], key=lambda w: w.seconds,
                            default=None)  # fmt: skip
                retry_after = (short.start + short.seconds - now) if short else 10.0
            self.orders_blocked_until = max(self.orders_blocked_until or 0.0, now + retry_after)
            return
        if status_code in (418, 429):
            if retry_after is None:
                # No header: wait out the current weight window rather than hammer the venue
                minute = next((w for w in self._windows if w.kind == "weight"), None)
                retry_after = (minute.start + minute.seconds - now) if minute else 60.0
            until = now + retry_after
            if status_code == 418:
                self.banned_until = max(self.banned_until or 0.0, until)
            else:
                self.retry_until = max(self.retry_until or 0.0, until)

    @property
    def hold_required(self) -> bool:
        """True while an IP ban (418) is in force: the session must HOLD until it ends."""
        return self.banned_until is not None and self._clock() < self.banned_until

    def status(self) -> dict[str, Any]:
        now = self._clock()
        for win in self._windows:
            win.roll(now)
        banned = self.banned_until if self.banned_until and now < self.banned_until else None
        retry = self.retry_until if self.retry_until and now < self.retry_until else None
        orders_blocked = (
            self.orders_blocked_until
            if self.orders_blocked_until and now < self.orders_blocked_until
            else None
        )
        waf = self.waf_until if self.waf_until and now < self.waf_until else None
        near = any(w.used >= self.threshold * w.limit for w in self._windows)
        level = "ERROR" if banned else "WARN" if (retry or near or orders_blocked or waf) else "OK"
        return {
            "level": level,
            "used": {f"{w.kind}_{w.label}": w.used for w in self._windows},
            "limits": {f"{w.kind}_{w.label}": w.limit for w in self._windows},
            "threshold": self.threshold,
            "banned_until": banned,
            "retry_after_s": round(retry - now, 3) if retry else None,
            "orders_blocked_s": round(orders_blocked - now, 3) if orders_blocked else None,
            "waf_backoff_s": round(waf - now, 3) if waf else None,
            "hold_required": banned is not None,
            "throttled_count": self.throttled_count,
        }


def _parse_retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
