"""Is BinanceSpotClient.order() faster than ccxt? Signed LIMIT orders against the simulator, in one run.

Run: .venv/bin/python benchmarks/bench_client.py [--orders 1000] [--throughput-orders 2000]

A spawned child runs the simulator (uvicorn, one worker, rate limits lifted) on 127.0.0.1. Every order is
a LIMIT IOC BUY priced under the book (validated, signed, placed, expired): nothing rests, so
MAX_NUM_ORDERS never trips however long the run. Each client sends one order at a time on a warm
keep-alive connection (after a warm-up, in interleaved rounds so machine noise hits all three alike),
and its per-call latency is timed:
- BinanceSpotClient.order(): async, its default transport (adapters.binance.transport.AiohttpTransport);
- ccxt binance.create_order(): sync ccxt, enableRateLimit=False, URLs pointed at the simulator;
- bare signed httpx: httpx.Client (sync, keep-alive), stdlib HMAC, one POST (the floor of a Python client).
Then BinanceSpotClient.order() throughput at 1, 8 and 32 orders in flight (max_in_flight=32; the
default is 16). Target: client p50 / ccxt p50 ≤ 0.8. Results: benchmarks/results/client.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from typing import Any

from common import hmac_signed_query, percentiles_ms, save, simulator_process, table

KEY, SECRET = "bench-client-key", "bench-client-secret"
PRICE = "60000"  # BUY under the simulator's 65000 reference: IOC expires, never rests
ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC", "quantity": "0.001"}
TARGET = 0.8


def _ok_expired(answer: dict[str, Any]) -> None:
    if answer.get("status") not in ("EXPIRED", "expired", "canceled"):
        raise RuntimeError(f"order was not an expired IOC: {answer}")


# -- (a) the project's client --------------------------------------------------------------------


async def _client(base: str, max_in_flight: int = 16) -> Any:
    from adapters.binance.rest import BinanceSpotClient

    client = BinanceSpotClient("bench", KEY, SECRET, {"rest": base}, max_in_flight=max_in_flight)
    # As BinanceExchange does at start: the governor learns the venue's (here lifted) limits; with its
    # defaults (100 orders per 10 s) it would rightly wait for the window to roll over
    await client.exchange_info()
    return client


class ClientBlocks:
    """BinanceSpotClient on one long-lived event loop, so blocks of orders share its warm connections."""

    name = "BinanceSpotClient.order()"

    def __init__(self, base: str) -> None:
        self._runner = asyncio.Runner()
        self._client = self._runner.run(_client(base))

    def block(self, first: int, k: int) -> list[float]:
        return self._runner.run(self._block(first, k))

    async def _block(self, first: int, k: int) -> list[float]:
        lat = []
        for i in range(first, first + k):
            payload = {**ORDER, "price": PRICE, "newClientOrderId": f"pb-lat-{i}"}
            t0 = time.perf_counter()
            answer = await self._client.order(payload)
            lat.append(time.perf_counter() - t0)
            _ok_expired(answer)
        return lat

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()


async def _client_throughput(base: str, n: int, inflight: int, tag: str) -> dict[str, Any]:
    client = await _client(base, max_in_flight=32)
    lat: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            payload = {**ORDER, "price": PRICE, "newClientOrderId": f"pb-tp{tag}-{i}"}
            t0 = time.perf_counter()
            answer = await client.order(payload)
            lat.append(time.perf_counter() - t0)
            _ok_expired(answer)

    try:
        await client.order({**ORDER, "price": PRICE, "newClientOrderId": f"pb-tp{tag}-warm"})
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        wall = time.perf_counter() - t0
    finally:
        await client.aclose()
    p50, p99 = percentiles_ms(lat)
    return {"in_flight": inflight, "orders": n, "orders_per_s": n / wall, "p50_ms": p50, "p99_ms": p99,
            "peak_in_flight": client.peak_in_flight}  # fmt: skip


# -- (b) ccxt, as tests/simulator/test_ccxt.py points it at the simulator ------------------------


def _ccxt_exchange(base: str) -> Any:
    import ccxt

    ex = ccxt.binance({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False})
    for name in ("public", "private"):
        ex.urls["api"][name] = f"{base}/api/v3"
    ex.urls["api"]["v1"] = f"{base}/api/v1"
    for name in [n for n in ex.urls["api"] if n.startswith(("sapi", "fapi", "dapi", "eapi", "papi"))]:
        ex.urls["api"][name] = f"{base}/{name}"  # a /sapi call would 404 here, not leave the machine
    ex.options["fetchCurrencies"] = False
    ex.options["fetchMarkets"] = {"types": ["spot"]}
    ex.options["fetchMargins"] = False
    ex.load_markets()  # outside the timed region, as any ccxt user does once
    return ex


class CcxtBlocks:
    name = "ccxt binance.create_order()"

    def __init__(self, base: str) -> None:
        self._ex = _ccxt_exchange(base)

    def block(self, first: int, k: int) -> list[float]:
        lat = []
        for _ in range(k):
            t0 = time.perf_counter()
            answer = self._ex.create_order(
                "BTC/USDT", "limit", "buy", 0.001, float(PRICE), {"timeInForce": "IOC"}
            )
            lat.append(time.perf_counter() - t0)
            _ok_expired(answer)
        return lat

    def close(self) -> None:
        self._ex.session.close()


# -- (c) the floor: one signed POST on a keep-alive httpx.Client ---------------------------------


class BareBlocks:
    name = "bare signed httpx.Client"

    def __init__(self, base: str) -> None:
        import httpx

        self._http = httpx.Client(base_url=base, headers={"X-MBX-APIKEY": KEY})

    def block(self, first: int, k: int) -> list[float]:
        lat = []
        for i in range(first, first + k):
            t0 = time.perf_counter()
            query = hmac_signed_query({**ORDER, "price": PRICE, "newClientOrderId": f"bare-{i}"}, SECRET)
            answer = self._http.post(f"/api/v3/order?{query}").json()
            lat.append(time.perf_counter() - t0)
            _ok_expired(answer)
        return lat

    def close(self) -> None:
        self._http.close()


def measure_latency(base: str, n: int, warmup: int, rounds: int) -> list[dict[str, Any]]:
    """Each client sends `warmup` untimed orders, then n timed ones in `rounds` interleaved blocks, so a
    noisy neighbour on the machine slows every client alike instead of whichever ran at that moment."""
    clients = [ClientBlocks(base), CcxtBlocks(base), BareBlocks(base)]
    lat: dict[str, list[float]] = {c.name: [] for c in clients}
    try:
        for c in clients:
            c.block(0, warmup)
        per_round = max(n // rounds, 1)
        for r in range(rounds):
            for c in clients:
                lat[c.name] += c.block(warmup + r * per_round, per_round)
    finally:
        for c in clients:
            c.close()
    return [_latency_row(name, values) for name, values in lat.items()]


def _latency_row(name: str, lat: list[float]) -> dict[str, Any]:
    p50, p99 = percentiles_ms(lat)
    return {
        "client": name,
        "orders": len(lat),
        "p50_ms": p50,
        "p99_ms": p99,
        "orders_per_s": len(lat) / sum(lat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000, help="timed orders per client (latency)")
    parser.add_argument("--throughput-orders", type=int, default=2000, help="orders per concurrency level")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved blocks per client")
    args = parser.parse_args()
    n, warm = args.orders, args.warmup
    with simulator_process(KEY, SECRET) as base:
        latency = measure_latency(base, n, warm, args.rounds)
        throughput = [
            asyncio.run(_client_throughput(base, args.throughput_orders, k, str(k))) for k in (1, 8, 32)
        ]
    by_name = {r["client"]: r for r in latency}
    ratio = by_name["BinanceSpotClient.order()"]["p50_ms"] / by_name["ccxt binance.create_order()"]["p50_ms"]
    floor = by_name["bare signed httpx.Client"]["p50_ms"]
    for r in latency:
        r["p50_vs_bare"] = r["p50_ms"] / floor
    table(f"signed LIMIT IOC orders, one in flight, {n} timed per client (127.0.0.1, simulator in a child)",
          latency)  # fmt: skip
    table("BinanceSpotClient.order() throughput (max_in_flight=32)", throughput)
    verdict = "met" if ratio <= TARGET else "MISSED"
    table(
        "target",
        [{"ratio": "client p50 / ccxt p50", "value": ratio, "target": f"≤ {TARGET}", "verdict": verdict}],
    )
    save(
        "client",
        {
            "benchmark": "client",
            "orders_per_client": n,
            "warmup": warm,
            "cpus": multiprocessing.cpu_count(),
            "python": sys.version.split()[0],
            "latency": latency,
            "throughput": throughput,
            "client_p50_over_ccxt_p50": ratio,
            "target": TARGET,
            "target_met": ratio <= TARGET,
        },
    )


if __name__ == "__main__":
    main()
