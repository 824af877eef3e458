"""BinanceExchange checks the configured selfTradePreventionMode against exchangeInfo's
allowedSelfTradePreventionModes of the configured symbols: a symbol that disallows it (or does not list
its modes) fails closed with STP_MODE_NOT_ALLOWED, and the refusal is not cached."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from adapters.binance.exchange import BinanceExchange
from adapters.binance.rest import BinanceSpotClient
from engine.errors import ExchangeRejected
from tests.binance.helpers import API_KEY, BASE, SECRET, FakeVenue, ok

ALL = ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT", "TRANSFER"]


def _sym(name: str, allowed: list[str] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"symbol": name, "baseAsset": name[:3], "quoteAsset": "USDT", "filters": []}
    if allowed is not None:
        entry["allowedSelfTradePreventionModes"] = allowed
        entry["defaultSelfTradePreventionMode"] = "EXPIRE_MAKER"
    return entry


def _exchange(
    symbols: list[dict[str, Any]], stp: str | None, configured: tuple[str, ...] | None
) -> tuple[BinanceExchange, FakeVenue]:
    venue = FakeVenue()
    venue.route("GET", "/api/v3/exchangeInfo", lambda r, p: ok({"rateLimits": [], "symbols": symbols}))
    client = BinanceSpotClient(
        "testnet", API_KEY, SECRET, BASE, transport=httpx.MockTransport(venue), self_trade_prevention_mode=stp
    )
    return BinanceExchange(client, poll_interval_s=0, stp_mode=stp, symbols=configured), venue


async def test_an_allowed_mode_or_none_configured_passes() -> None:
    symbols = [_sym("BTCUSDT", ALL), _sym("ETHUSDT", ["NONE", "EXPIRE_MAKER"])]
    for stp, configured in (("EXPIRE_MAKER", None), (None, None), ("EXPIRE_BOTH", ("BTCUSDT",))):
        ex, _ = _exchange(symbols, stp, configured)
        assert set(await ex.symbol_rules()) == {"BTCUSDT", "ETHUSDT"}
        await ex.close()


async def test_a_configured_symbol_that_disallows_the_mode_fails_closed_and_is_asked_again() -> None:
    symbols = [_sym("BTCUSDT", ALL), _sym("ETHUSDT", ["NONE", "EXPIRE_MAKER"]), _sym("BNBUSDT", None)]
    ex, venue = _exchange(symbols, "EXPIRE_BOTH", ("BTCUSDT", "ETHUSDT", "BNBUSDT"))
    for _ in range(2):
        with pytest.raises(ExchangeRejected) as info:
            await ex.symbol_rules()
        assert info.value.reason == "STP_MODE_NOT_ALLOWED"
        assert str(info.value) == (
            "selfTradePreventionMode EXPIRE_BOTH is not allowed: BNBUSDT allows none listed; "
            "ETHUSDT allows NONE, EXPIRE_MAKER"
        )
    assert venue.count("GET", "/api/v3/exchangeInfo") == 2  # a refusal is not cached
    await ex.close()


async def test_without_configured_symbols_every_listed_symbol_is_checked() -> None:
    ex, _ = _exchange([_sym("BTCUSDT", ALL), _sym("ETHUSDT", ["NONE"])], "DECREMENT", None)
    with pytest.raises(ExchangeRejected, match=r"ETHUSDT allows NONE$"):
        await ex.symbol_rules()
    await ex.close()
