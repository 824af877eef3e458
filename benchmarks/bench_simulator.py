"""How fast does the simulator take signed LIMIT orders? Measured over loopback HTTP with keep-alive clients.

Run: .venv/bin/python benchmarks/bench_simulator.py [--orders 2000]

A child process runs the simulator (uvicorn, one worker, rate limits lifted) on 127.0.0.1. The parent
signs every request like a Binance client and sends, first sequentially from one keep-alive connection,
then from 16 concurrent tasks (httpx on the project's aiohttp transport). Rows:
- ping: unsigned GET /api/v3/ping, the floor of this HTTP stack in this run;
- order/test: signed POST /api/v3/order/test (signature, timestamp and filter checks, no engine);
- LIMIT order: signed POST /api/v3/order, LIMIT IOC priced off the book (validated, placed, expired:
  nothing rests, so MAX_NUM_ORDERS never trips however long the run).
The in-process engine.place() rate of the same order is printed too, to show what HTTP costs on top.
Results go to benchmarks/results/simulator.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from common import (  # also puts the repository root on sys.path
    hmac_signed_query,
    save,
    simulator_process,
    table,
)

KEY, SECRET = "bench-key", "bench-secret"
CONCURRENCY = 16
ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC", "quantity": "0.001"}


def _signed(params: dict[str, str]) -> tuple[str, dict[str, str]]:
    return hmac_signed_query(params, SECRET), {"X-MBX-APIKEY": KEY}


Request = Callable[[int], tuple[str, str, str | None, dict[str, str]]]  # seq -> method, path, body, headers


def ping(seq: int) -> tuple[str, str, str | None, dict[str, str]]:
    return "GET", "/api/v3/ping", None, {}


def test_order(seq: int) -> tuple[str, str, str | None, dict[str, str]]:
    body, headers = _signed({**ORDER, "price": "60000"})
    return (
        "POST",
        "/api/v3/order/test",
        body,
        {**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )


def limit_order(seq: int) -> tuple[str, str, str | None, dict[str, str]]:
    body, headers = _signed({**ORDER, "price": "60000", "newClientOrderId": f"bench-{seq}"})
    return "POST", "/api/v3/order", body, {**headers, "Content-Type": "application/x-www-form-urlencoded"}


def _check(r: httpx.Response) -> None:
    if r.status_code != 200:
        raise RuntimeError(f"{r.request.url.path} answered {r.status_code}: {r.text}")


def run_sequential(base: str, make: Request, n: int) -> list[float]:
    lat = []
    with httpx.Client(base_url=base) as c:
        for i in range(n):
            method, path, body, headers = make(i)
            t0 = time.perf_counter()
            _check(c.request(method, path, content=body, headers=headers))
            lat.append(time.perf_counter() - t0)
    return lat


async def _run_concurrent(base: str, make: Request, n: int) -> list[float]:
    from adapters.binance.transport import AiohttpTransport

    lat: list[float] = []
    # the project's own client transport (httpx's pool is the bottleneck at 16 in flight: encode/httpx#3215)
    transport = AiohttpTransport(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, transport=transport) as c:

        async def worker(offset: int) -> None:
            for i in range(offset, n, CONCURRENCY):
                method, path, body, headers = make(i)
                t0 = time.perf_counter()
                _check(await c.request(method, path, content=body, headers=headers))
                lat.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker(k) for k in range(CONCURRENCY)))
    return lat


def summarize(name: str, mode: str, lat: list[float], wall: float) -> dict[str, Any]:
    lat_sorted = sorted(lat)
    return {
        "row": name,
        "mode": mode,
        "requests": len(lat),
        "per_s": len(lat) / wall,
        "p50_ms": statistics.median(lat_sorted) * 1000,
        "p99_ms": lat_sorted[int(len(lat_sorted) * 0.99) - 1] * 1000,
    }


def engine_floor(n: int) -> float:
    """In-process MatchingEngine.place() of the same order, per second."""
    from adapters.venue import MatchingEngine

    engine = MatchingEngine()
    t0 = time.perf_counter()
    for i in range(n):
        engine.place({**ORDER, "price": "60000", "newClientOrderId": f"floor-{i}"})
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="requests per row and mode")
    args = parser.parse_args()
    with simulator_process(KEY, SECRET) as base:
        rows = []
        for name, make in (("ping", ping), ("order/test", test_order), ("LIMIT order", limit_order)):
            run_sequential(base, make, min(200, args.orders))  # warm-up
            t0 = time.perf_counter()
            lat = run_sequential(base, make, args.orders)
            rows.append(summarize(name, "sequential", lat, time.perf_counter() - t0))
            t0 = time.perf_counter()
            lat = asyncio.run(_run_concurrent(base, make, args.orders))
            rows.append(summarize(name, f"{CONCURRENCY} concurrent", lat, time.perf_counter() - t0))
    floor_by_mode = {r["mode"]: r["per_s"] for r in rows if r["row"] == "ping"}
    for r in rows:
        r["ratio_to_ping"] = r["per_s"] / floor_by_mode[r["mode"]]
    engine_rate = engine_floor(args.orders)

    table("simulator: signed requests over loopback", rows)
    print(f"in-process engine.place(): {engine_rate:.0f} orders/s")
    save("simulator", {"orders_per_row": args.orders, "concurrency": CONCURRENCY, "cpus": multiprocessing.cpu_count(),
                       "python": sys.version.split()[0], "rows": rows, "engine_place_per_s": engine_rate})  # fmt: skip


if __name__ == "__main__":
    main()
