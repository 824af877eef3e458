from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from adapters.venue import MatchingEngine

NOW_MS = 1_750_000_000_000


class Recorder:
    """Collects listener events by kind."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.append((kind, payload))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [p for k, p in self.events if k == kind]


@pytest.fixture
def clock() -> list[int]:
    return [NOW_MS]


@pytest.fixture
def venue(clock: list[int]) -> MatchingEngine:
    return MatchingEngine(clock_ms=lambda: clock[0])


@pytest.fixture
def recorder(venue: MatchingEngine) -> Recorder:
    rec = Recorder()
    venue.add_listener(rec)
    return rec


def limit(side: str, qty: str, price: str, tif: str = "GTC", **extra: str) -> dict[str, str]:
    return {
        "symbol": "BTCUSDT",
        "side": side,
        "type": "LIMIT",
        "timeInForce": tif,
        "quantity": qty,
        "price": price,
        **extra,
    }


def market(
    side: str, qty: str | None = None, quote: str | None = None, symbol: str = "BTCUSDT"
) -> dict[str, str]:
    p = {"symbol": symbol, "side": side, "type": "MARKET"}
    if qty is not None:
        p["quantity"] = qty
    if quote is not None:
        p["quoteOrderQty"] = quote
    return p


def balance(venue: MatchingEngine, asset: str) -> tuple[Decimal, Decimal]:
    for b in venue.account()["balances"]:
        if b["asset"] == asset:
            return Decimal(b["free"]), Decimal(b["locked"])
    raise AssertionError(f"no balance for {asset}")
