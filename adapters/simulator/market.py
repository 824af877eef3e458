"""Public market-data endpoints (security NONE): ping, time, exchangeInfo, bookTicker, ticker/price, depth."""

from __future__ import annotations

import json
from typing import Any

from adapters.simulator.state import SimulatorState
from adapters.venue.errors import VenueError

_BAD_SYMBOL = (-1121, "Invalid symbol.")
_STATUS_MISMATCH = (-1220, "The symbol's status does not match the requested symbolStatus.")
_STATUSES = frozenset({"TRADING", "END_OF_DAY", "HALT", "BREAK", "CANCEL_ONLY"})


def _by_status(state: SimulatorState, p: dict[str, str], names: list[str] | None) -> list[str]:
    """Apply the optional `symbolStatus` filter: -1220 for a single symbol that does not match."""
    chosen = names if names is not None else list(state.engine.rules)
    wanted = p.get("symbolStatus")
    if wanted is None:
        return chosen
    if wanted not in _STATUSES:
        raise VenueError(-1100, "Illegal characters found in parameter 'symbolStatus'.")
    kept = [s for s in chosen if state.engine.rules[s].status == wanted]
    if "symbol" in p and not kept:
        raise VenueError(*_STATUS_MISMATCH)
    return kept


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
    names = _symbols_param(state, p)
    if names is not None and "symbolStatus" in p:
        raise VenueError(-1128, "Combination of optional parameters invalid.")
    chosen = _by_status(state, p, names)
    info = dict(state.engine.exchange_info(chosen))
    if not chosen:  # the engine reads an empty list as "all"
        info["symbols"] = []
    info["serverTime"] = state.now_ms()
    # the advertised limits are the ones this HTTP layer enforces
    info["rateLimits"] = state.limiter.rate_limits()
    return info


def book_ticker(state: SimulatorState, p: dict[str, str]) -> Any:
    chosen = _by_status(state, p, _symbols_param(state, p))
    if "symbol" in p:
        return state.engine.book_ticker(p["symbol"])
    return [state.engine.book_ticker(s) for s in chosen]


def ticker_price(state: SimulatorState, p: dict[str, str]) -> Any:
    def one(symbol: str) -> dict[str, str]:
        return {"symbol": symbol, "price": f"{state.engine.prices[symbol]:.8f}"}

    chosen = _by_status(state, p, _symbols_param(state, p))
    if "symbol" in p:
        return one(p["symbol"])
    return [one(s) for s in chosen]


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
    if symbol in state.engine.rules:
        _by_status(state, p, [symbol])
    return state.engine.depth(symbol, depth_limit(p))


def ticker_weight(p: dict[str, str]) -> int:
    return 2 if "symbol" in p else 4
