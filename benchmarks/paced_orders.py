"""Orders at a fixed rate (open loop) through POST /api/live/order, as a process of its own.

Run: python paced_orders.py BASE_URL TOKEN RATE SECONDS — prints one JSON line: sent, ok, non_2xx, errors,
the achieved rate, the answers' p50/p99 in ms and its own CPU seconds. Order i is sent at start + i/RATE whatever the answers
before it (at most 256 in flight), so a slow server meets the same offered load instead of a lighter one.
wrk cannot pace (it sends as fast as the server answers); bench_relay.py's --api-load mode uses this at
half of wrk's measured maximum.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import uuid
from typing import Any

import aiohttp


async def paced(base: str, token: str, rate: float, seconds: float) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    counts = {"ok": 0, "non_2xx": 0, "errors": 0}
    in_flight = asyncio.Semaphore(256)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base, headers=headers) as http:

        async def one(i: int) -> None:
            body = {"symbol": "BTCUSDT", "side": "BUY" if i % 2 == 0 else "SELL", "type": "MARKET",
                    "quantity": "0.001", "newClientOrderId": f"pb-paced-{run}-{i}"}  # fmt: skip
            t = time.perf_counter()
            try:
                async with http.post("/api/live/order", json=body) as resp:
                    await resp.read()
                    counts["ok" if resp.status == 200 else "non_2xx"] += 1
            except aiohttp.ClientError:
                counts["errors"] += 1
            finally:
                latencies.append((time.perf_counter() - t) * 1000)
                in_flight.release()

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await in_flight.acquire()
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    latencies.sort()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "sent": n,
        **counts,
        "achieved_req_s": round(n / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2], 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),  # this process's own CPU, start-up included
    }


if __name__ == "__main__":
    base_url, bearer, per_s, secs = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(asyncio.run(paced(base_url, bearer, per_s, secs))))
