"""Public market-data endpoints (security NONE): ping, time, exchangeInfo, bookTicker, ticker/price, depth."""

from __future__ import annotations

import json
from typing import Any

from adapters.simulator.state import SimulatorState
from adapters.venue.errors import VenueError

_BAD_SYMBOL = (-1121, "Invalid symbol.")


def _symbols_param(state: SimulatorState, p: dict[str, str]) -> list[str] | None:
    """`symbol` or `symbols` (a JSON array) as a list, checked against the engine's symbols; None = all."""
    if "symbol" in p and "symbols" in p:
        raise VenueError(-1128, "Combination of optional parameters invalid.")
    if "symbol" in p:
        names = [p["symbol"]]
    elif "symbols" in p:
        try:
            names = json.loads(p["symbols"])
        except ValueError:
            raise VenueError(-1100, "Illegal characters found in parameter 'symbols'.") from None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise VenueError(
                -1102, "Mandatory parameter 'symbols' was not sent, was empty/null, or malformed."
            )
    else:
        return None
    for name in names:
        if name not in state.engine.rules:
            raise VenueError(*_BAD_SYMBOL)
    return names


def ping(state: SimulatorState, p: dict[str, str]) -> Any:
    return {}


def server_time(state: SimulatorState, p: dict[str, str]) -> Any:
    return {"serverTime": state.now_ms()}


def exchange_info(state: SimulatorState, p: dict[str, str]) -> Any:
    info = dict(state.engine.exchange_info(_symbols_param(state, p)))
    info["serverTime"] = state.now_ms()
    # the advertised limits are the ones this HTTP layer enforces
    info["rateLimits"] = state.limiter.rate_limits()
    return info


def book_ticker(state: SimulatorState, p: dict[str, str]) -> Any:
    wanted = _symbols_param(state, p)
    if wanted is not None and "symbol" in p:
        return state.engine.book_ticker(p["symbol"])
    return [state.engine.book_ticker(s) for s in (wanted or list(state.engine.rules))]


def ticker_price(state: SimulatorState, p: dict[str, str]) -> Any:
    def one(symbol: str) -> dict[str, str]:
        return {"symbol": symbol, "price": f"{state.engine.prices[symbol]:.8f}"}

    wanted = _symbols_param(state, p)
    if wanted is not None and "symbol" in p:
        return one(p["symbol"])
    return [one(s) for s in (wanted or list(state.engine.rules))]


def depth_limit(p: dict[str, str]) -> int:
    raw = p.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 5000:
        raise VenueError(-1100, "Illegal characters found in parameter 'limit'; legal range is '1-5000'.")
    return int(raw)


def depth_weight(p: dict[str, str]) -> int:
    try:
        limit = depth_limit(p)
    except VenueError:
        return 5
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def depth(state: SimulatorState, p: dict[str, str]) -> Any:
    """The engine's synthetic book (a few levels either side of the reference price)."""
    symbol = p.get("symbol")
    if not symbol:
        raise VenueError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
    return state.engine.depth(symbol, depth_limit(p))


def ticker_weight(p: dict[str, str]) -> int:
    return 2 if "symbol" in p else 4
