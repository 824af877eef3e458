"""A Binance-compatible spot matching engine, pure and synchronous; shared by the paper venue and the simulator."""

from adapters.venue.errors import VenueError
from adapters.venue.matching import MatchingEngine
from adapters.venue.symbols import DEFAULT_BALANCES, DEFAULT_PRICES, DEFAULT_SYMBOLS, exchange_info_symbol

__all__ = [
    "DEFAULT_BALANCES",
    "DEFAULT_PRICES",
    "DEFAULT_SYMBOLS",
    "MatchingEngine",
    "VenueError",
    "exchange_info_symbol",
]
