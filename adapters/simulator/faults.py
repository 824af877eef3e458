"""The fault injector's state: what goes wrong next, set through POST /_sim/faults.

Counters (`http_5xx`, `lost_response`, forced 429s) are consumed one request at a time; durations are
stored as an end time on the simulator clock. `ws_drop` and `ws_shutdown` are actions, not states, so they
live in admin.py; `ws_refuse` is a duration (market-stream handshakes are refused until it ends).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

_ALLOWED_5XX = (500, 502, 503, 504)


class FaultSpecError(ValueError):
    """The JSON sent to /_sim/faults is not understood."""


def _int(spec: dict[str, Any], key: str, minimum: int = 0) -> int:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise FaultSpecError(f"{key} must be a number >= {minimum}, was {value!r}")
    return int(value)


def _float(spec: dict[str, Any], key: str) -> float:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultSpecError(f"{key} must be a number >= 0, was {value!r}")
    return float(value)


def _status(spec: dict[str, Any], key: str) -> int:
    value = _int(spec, key)
    if value not in _ALLOWED_5XX:
        raise FaultSpecError(f"{key} must be one of {_ALLOWED_5XX}, was {value}")
    return value


@dataclass
class Faults:
    latency_ms: int = 0
    order_answer_delay_ms: int = 0  # POST /api/v3/order executes at once, then waits this long to answer
    http_5xx: int = 0
    http_5xx_status: int = 503
    http_5xx_path: str = ""  # when set, only requests to this path are hit (e.g. "/api/v3/order")
    lost_response: int = 0
    lost_response_status: int = 503
    not_found_lag_s: float = 0.0
    # GET /myTrades reads "Memory => Database" (rest-api.md): a trade shows there this long after it happened
    trades_lag_s: float = 0.0
    clock_skew_ms: int = 0
    force_429: int = 0
    force_429_retry_after_s: int = 1
    force_429_path: str = ""  # when set, only requests to this path take the forced 429s
    waf_403: int = 0  # next N REST requests meet a WAF block: HTTP 403, HTML body, nothing executed
    ws_stall_until_ms: int = 0
    ws_refuse_until_ms: int = 0  # market-stream handshakes answer HTTP 403 until then (an outage)

    def update(self, spec: dict[str, Any], now_ms: int) -> list[str]:
        """Apply a /_sim/faults body; returns the ws actions it asked for (e.g. ["ws_drop"]).

        `rate_limit` is {"status": 429, "count": N, "retry_after_s": R, "path": P} or {"status": 418, "seconds": S};
        the 418 part is applied by the caller (it bans IPs in the rate limiter) and is returned as "ban:S".

        Raises:
            FaultSpecError: unknown key or bad value; nothing is changed then.
        """
        staged = Faults(**asdict(self))
        actions: list[str] = []
        for key in spec:
            if key in ("latency_ms", "order_answer_delay_ms", "http_5xx", "lost_response", "waf_403"):
                setattr(staged, key, _int(spec, key))
            elif key in ("http_5xx_status", "lost_response_status"):
                setattr(staged, key, _status(spec, key))
            elif key == "clock_skew_ms":
                value = spec[key]
                if isinstance(value, bool) or not isinstance(value, int):
                    raise FaultSpecError(f"clock_skew_ms must be an integer, was {value!r}")
                staged.clock_skew_ms = value
            elif key == "http_5xx_path":
                staged.http_5xx_path = _path(spec, key)
            elif key in ("not_found_lag_s", "trades_lag_s"):
                setattr(staged, key, _float(spec, key))
            elif key == "ws_stall":
                staged.ws_stall_until_ms = now_ms + int(_float(spec, key) * 1000)
            elif key == "ws_refuse":
                staged.ws_refuse_until_ms = now_ms + int(_float(spec, key) * 1000)
            elif key == "ws_drop":
                if spec[key]:
                    actions.append("ws_drop")
            elif key == "ws_shutdown":
                actions.append(f"ws_shutdown:{_float(spec, key)}")
            elif key == "rate_limit":
                actions.extend(staged._rate_limit(spec[key]))
            else:
                raise FaultSpecError(f"unknown fault {key!r}")
        for name, value in asdict(staged).items():
            setattr(self, name, value)
        return actions

    def _rate_limit(self, rl: Any) -> list[str]:
        if not isinstance(rl, dict) or rl.get("status") not in (429, 418):
            raise FaultSpecError(
                'rate_limit must be {"status": 429, "count": N} or {"status": 418, "seconds": S}'
            )
        if rl["status"] == 429:
            self.force_429 = _int(rl, "count", 1)
            if "retry_after_s" in rl:
                self.force_429_retry_after_s = _int(rl, "retry_after_s", 1)
            self.force_429_path = _path(rl, "path") if "path" in rl else ""
            return []
        return [f"ban:{_float(rl, 'seconds')}"]

    def take(self, counter: str) -> bool:
        """Consume one unit of a counter fault; True if this request is hit."""
        left = getattr(self, counter)
        if left > 0:
            setattr(self, counter, left - 1)
            return True
        return False

    def take_429(self, path: str) -> bool:
        """Consume one forced 429 if this request's path is the one targeted (or any path is)."""
        if self.force_429_path and path != self.force_429_path:
            return False
        return self.take("force_429")

    def take_5xx(self, path: str) -> bool:
        """Consume one forced 5xx if this request's path is the one targeted (or any path is)."""
        if self.http_5xx_path and path != self.http_5xx_path:
            return False
        return self.take("http_5xx")

    def ws_stalled(self, now_ms: int) -> bool:
        return now_ms < self.ws_stall_until_ms

    def ws_refused(self, now_ms: int) -> bool:
        return now_ms < self.ws_refuse_until_ms

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


def _path(spec: dict[str, Any], key: str) -> str:
    value = spec[key]
    if not isinstance(value, str) or (value and not value.startswith("/")):
        raise FaultSpecError(f"{key} must be a path such as /api/v3/order, was {value!r}")
    return value
