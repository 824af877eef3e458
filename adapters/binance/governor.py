"""Client-side rate-limit governor for Binance REST (binance_facts.md §7).

Before each request it reserves the request's weight (and order count) in every calendar-aligned window
(1 MINUTE resets at :00, 10 SECOND at :00/:10/…, 1 DAY at 00:00 UTC). A request that would push a window
past `threshold` × limit waits for the window to roll over; one that would wait longer than `max_wait_s`
is refused without sending. The venue's own counters (X-MBX-USED-WEIGHT-1M, X-MBX-ORDER-COUNT-10S/-1D)
replace our estimate whenever they are higher: the venue counts every process sharing our IP/account.
During a Retry-After (429) or an IP ban (418) nothing is sent at all.
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


@dataclass
class _Window:
    kind: str  # "weight" | "orders"
    label: str  # header suffix, e.g. "1M", "10S", "1D"
    seconds: int
    limit: int
    start: float = 0.0
    used: int = 0

    def roll(self, now: float) -> None:
        start = math.floor(now / self.seconds) * self.seconds  # epoch-aligned = calendar-aligned in UTC
        if start != self.start:
            self.start, self.used = start, 0


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
                win.start, win.used = prev.start, prev.used
            windows.append(win)
        if windows:
            self._windows = windows

    async def acquire(self, weight: int, orders: int = 0) -> None:
        """Reserve `weight` (and `orders`) before sending; awaits a window roll-over when needed.

        Raises:
            ExchangeUnavailable: RATE_LIMIT or IP_BANNED while a Retry-After/ban is in force, or when the
                wait for headroom would exceed max_wait_s. Nothing was sent.
        """
        while True:
            now = self._clock()
            self._refuse_if_blocked(now)
            wait = 0.0
            for win in self._windows:
                win.roll(now)
                cost = weight if win.kind == "weight" else orders
                if cost and win.used + cost > self.threshold * win.limit:
                    wait = max(wait, win.start + win.seconds - now)
            if wait <= 0:
                for win in self._windows:
                    win.used += weight if win.kind == "weight" else orders
                return
            if wait > self.max_wait_s:
                raise ExchangeUnavailable(
                    f"rate limit headroom comes back in {wait:.0f}s, more than {self.max_wait_s:.0f}s",
                    reason=Reason.RATE_LIMIT.value,
                    retry_after_s=wait,
                )
            self.throttled_count += 1
            await self._sleep(wait + 0.001)

    def _refuse_if_blocked(self, now: float) -> None:
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

    def record(self, status_code: int, headers: Mapping[str, str]) -> None:
        """Learn from one response: the venue's counters, and 429/418 with Retry-After (seconds)."""
        now = self._clock()
        lower = {k.lower(): v for k, v in headers.items()}
        for win in self._windows:
            win.roll(now)
            prefix = "x-mbx-used-weight-" if win.kind == "weight" else "x-mbx-order-count-"
            raw = lower.get(prefix + win.label.lower())
            if raw is not None and raw.strip().isdigit():
                win.used = max(win.used, int(raw))
        if status_code in (418, 429):
            retry_after = _parse_retry_after(lower.get("retry-after"))
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
        near = any(w.used >= self.threshold * w.limit for w in self._windows)
        level = "ERROR" if banned else "WARN" if (retry or near) else "OK"
        return {
            "level": level,
            "used": {f"{w.kind}_{w.label}": w.used for w in self._windows},
            "limits": {f"{w.kind}_{w.label}": w.limit for w in self._windows},
            "threshold": self.threshold,
            "banned_until": banned,
            "retry_after_s": round(retry - now, 3) if retry else None,
            "hold_required": banned is not None,
            "throttled_count": self.throttled_count,
        }


def _parse_retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
