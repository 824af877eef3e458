"""Binance Spot adapter: signing, error map, rate-limit governor, server clock, REST client, transport,
ExchangePort implementation, market-data WebSocket feed, wire schemas (one module each)."""

__all__ = [
    "clock",
    "constants",
    "errors",
    "exchange",
    "governor",
    "rest",
    "schemas",
    "signing",
    "transport",
    "ws",
]
