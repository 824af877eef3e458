"""Official Binance Spot base URLs (rest-api.md "General API Information", testnet/). Only the composition root picks one;
tests use 127.0.0.1 and never these."""

from __future__ import annotations

from types import MappingProxyType

LIVE = MappingProxyType({"rest": "https://api.binance.com", "ws": "wss://stream.binance.com:9443"})
TESTNET = MappingProxyType(
    {"rest": "https://testnet.binance.vision", "ws": "wss://stream.testnet.binance.vision"}
)

BASE_URLS = MappingProxyType({"live": LIVE, "testnet": TESTNET})

API_KEY_HEADER = "X-MBX-APIKEY"
