"""What does watching idle orders cost in request weight? The user data stream against the polling fallback.

Run: .venv/bin/python benchmarks/bench_weight.py [--seconds 20] [--orders 50] [--symbols 10] [--poll 2.0]

The simulator runs in this process (a uvicorn thread on 127.0.0.1) with `--symbols` USDT pairs. Each
scenario places `--orders` resting LIMIT buys spread over the symbols through BinanceExchange, then stays
idle (prices do not move: no market stream is connected, so nothing fills) for `--seconds` and counts the
REQUEST_WEIGHT the simulator charged meanwhile:
- stream: UserDataStream subscribed (userDataStream.subscribe.signature, weight 2, once per connection,
  i.e. once per 23.5 h rollover), no polling;
- poll: BinanceExchange's poller every `--poll` s (openOrders per tracked symbol, weight 6 each).
Weight per minute is the idle window's weight scaled to 60 s. Results go to benchmarks/results/weight.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from decimal import Decimal
from typing import Any

from common import save, table  # also puts the repository root on sys.path

from adapters.binance.exchange import BinanceExchange
from adapters.binance.rest import BinanceSpotClient
from adapters.binance.user_stream import UserDataStream
from adapters.simulator.server import SimulatorServer
from adapters.venue.matching import MatchingEngine
from adapters.venue.symbols import DEFAULT_SYMBOLS
from engine.types import OrderRequest, OrderType, Side, TimeInForce

KEY, SECRET = "bench-key", "bench-secret"


def _engine(n_symbols: int) -> MatchingEngine:
    template = DEFAULT_SYMBOLS["BTCUSDT"]
    symbols = {}
    for i in range(n_symbols):
        name = f"C{i:02d}USDT"
        symbols[name] = dataclasses.replace(template, symbol=name, base_asset=f"C{i:02d}")
    return MatchingEngine(
        symbols=symbols,
        prices=dict.fromkeys(symbols, Decimal(100)),
        balances={"USDT": Decimal(10_000_000)},
    )


class _WeightMeter:
    """Counts every weight unit the simulator's limiter admits or charges (REST and WebSocket API)."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.total = 0
        limiter = sim.state.limiter
        admit, charge = limiter.admit, limiter.charge

        def counted_admit(ip: str, now_ms: int, weight: int) -> None:
            self.total += weight
            admit(ip, now_ms, weight)

        def counted_charge(ip: str, now_ms: int, weight: int) -> None:
            self.total += weight
            charge(ip, now_ms, weight)

        limiter.admit = counted_admit  # type: ignore[method-assign]
        limiter.charge = counted_charge  # type: ignore[method-assign]


async def _scenario(
    mode: str, seconds: float, n_orders: int, n_symbols: int, poll_s: float
) -> dict[str, Any]:
    big = 10**12
    with SimulatorServer(
        KEY, SECRET, engine=_engine(n_symbols), weight_limit=big, order_limit_10s=big
    ) as sim:
        meter = _WeightMeter(sim)
        client = BinanceSpotClient("testnet", KEY, SECRET, {"rest": sim.base_url, "ws": sim.ws_url})
        ex = BinanceExchange(client, poll_interval_s=poll_s if mode == "poll" else 0)
        updates: list[Any] = []
        ex.on_update(updates.append)
        stream: UserDataStream | None = None
        if mode == "stream":
            stream = UserDataStream.for_profile("simulator", KEY, SECRET, url=f"{sim.ws_url}/ws-api/v3")
            await stream.start()
            while stream.status()["subscription_id"] is None:
                await asyncio.sleep(0.01)
        try:
            for i in range(n_orders):
                req = OrderRequest(
                    f"C{i % n_symbols:02d}USDT", Side.BUY, OrderType.LIMIT, f"bw-{mode}-{i}",
                    quantity=Decimal("0.1"), price=Decimal(90), time_in_force=TimeInForce.GTC,
                )  # fmt: skip
                await ex.place(req)
            setup_weight = meter.total
            await asyncio.sleep(seconds)
            idle_weight = meter.total - setup_weight
        finally:
            if stream is not None:
                await stream.stop()
            await ex.close()
            await client.aclose()
    return {
        "mode": mode,
        "orders": n_orders,
        "symbols": n_symbols,
        "idle_s": seconds,
        "setup_weight": setup_weight,
        "idle_weight": idle_weight,
        "weight_per_min": idle_weight * 60 / seconds,
        "share_of_6000": f"{idle_weight * 60 / seconds / 6000:.1%}",
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--orders", type=int, default=50)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument(
        "--poll", type=float, default=2.0, help="the poller's interval (BinanceExchange default)"
    )
    args = parser.parse_args()
    rows = [
        await _scenario(mode, args.seconds, args.orders, args.symbols, args.poll)
        for mode in ("stream", "poll")
    ]
    table(f"request weight while {args.orders} orders on {args.symbols} symbols sit idle", rows)
    save("weight", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    asyncio.run(main())
