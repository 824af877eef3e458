"""SimulatorState: everything one simulator instance holds besides the matching engine's own book."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from adapters.simulator.faults import Faults
from adapters.simulator.weights import RateLimiter

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from adapters.simulator.streams import StreamHub
    from adapters.venue.matching import MatchingEngine


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Hidden:
    symbol: str
    order_id: int
    client_order_id: str
    visible_at_ms: int


@dataclass
class SimulatorState:
    engine: MatchingEngine
    keys: dict[str, str]  # api key -> HMAC secret
    clock_ms: Callable[[], int] = wall_clock_ms
    limiter: RateLimiter = field(default_factory=RateLimiter)
    faults: Faults = field(default_factory=Faults)
    hub: StreamHub | None = None
    real_orders: int = 0  # accepted by POST /api/v3/order (lost responses included)
    test_orders: int = 0  # validated by POST /api/v3/order/test; never reach the engine
    lost_responses: int = 0
    requests: int = 0
    # GET /sapi/v1/account/apiRestrictions answer; None = no /sapi (404), as on Spot Testnet
    api_restrictions: dict[str, Any] | None = None
    quiet_market: bool = False  # True: the price driver does not move prices (only POST /_sim/price does)
    ed25519_keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)  # api key -> public key
    _hidden: list[_Hidden] = field(default_factory=list)

    def on_engine_event(self, kind: str, payload: dict[str, Any]) -> None:
        """Engine listener: an order's first trade takes it off the unfilled-order count."""
        if kind != "order" or payload.get("executionType") != "TRADE" or not payload.get("lastTrade"):
            return
        if Decimal(payload["executedQty"]) == Decimal(payload["lastTrade"]["qty"]):
            self.limiter.count_order(self.now_ms(), -1)

    def now_ms(self) -> int:
        """Server time: the injected clock plus the clock-skew fault."""
        return self.clock_ms() + self.faults.clock_skew_ms

    # not-found lag: orders placed while the fault is on stay invisible to queries for a while
    def hide_if_lagging(self, order: dict[str, Any]) -> None:
        lag_ms = int(self.faults.not_found_lag_s * 1000)
        if lag_ms > 0 and "orderId" in order:
            self._hidden.append(
                _Hidden(
                    order["symbol"], int(order["orderId"]), order["clientOrderId"], self.clock_ms() + lag_ms
                )
            )

    def is_hidden(self, symbol: str, order_id: int | None, client_order_id: str | None) -> bool:
        now = self.clock_ms()
        self._hidden = [h for h in self._hidden if h.visible_at_ms > now]
        return any(
            h.symbol == symbol
            and ((order_id is not None and h.order_id == order_id) or h.client_order_id == client_order_id)
            for h in self._hidden
        )

    def clear_hidden(self) -> None:
        self._hidden.clear()
