"""A LIVE engine on the simulator over real loopback sockets, the way bootstrap wires it for testnet:
BinanceSpotClient + BinanceExchange with polling effectively off, the user data stream over the WebSocket
API attached, a real SQL journal. For tests that cut the stream and compare the journal with the
simulator's own trades."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from adapters.binance.exchange import BinanceExchange
from adapters.binance.rest import BinanceSpotClient
from adapters.binance.user_stream import UserDataStream
from adapters.simulator.server import SimulatorServer
from engine.config import ApprovalSettings, EngineSettings, RiskLimits
from engine.journal import JournalQuery
from engine.late_trades import TRADE_STREAM
from engine.persistence.sql_journal import SqlJournal
from engine.runtime import Engine
from engine.types import OrderRequest, OrderType, Side, TimeInForce
from tests.approvals import APPROVER_KEYS
from tests.engine.conftest import go_live
from tests.waiting import eventually_async as eventually


@dataclass
class Stack:
    sim: SimulatorServer
    engine: Engine
    exchange: BinanceExchange
    stream: UserDataStream

    def fault(self, **spec: Any) -> None:
        httpx.post(f"{self.sim.base_url}/_sim/ws_api/faults", json=spec).raise_for_status()

    def trades_of(self, symbol: str, order_id: int) -> list[dict[str, Any]]:
        """The simulator's own record (ground truth), not through the API."""
        return self.sim.state.engine.my_trades(symbol, order_id=order_id, limit=1000)

    def journaled_fills(self, cid: str) -> list[dict[str, Any]]:
        """The order's trades as journaled: in its own rows, and the late ones in the trade stream."""
        rows = self.engine.journal.stream("order", cid)
        late = self.engine.journal.query(JournalQuery(stream=TRADE_STREAM, limit=10_000))
        return [f for r in rows for f in r.payload.get("fills", ())] + [
            r.payload["fill"] for r in late if r.payload["clientOrderId"] == cid
        ]


def buy(cid: str, qty: str = "0.001", price: str = "64000.00") -> OrderRequest:
    return OrderRequest(
        "BTCUSDT", Side.BUY, OrderType.LIMIT, cid, Decimal(qty), Decimal(price), TimeInForce.GTC
    )


@asynccontextmanager
async def live_stack(db_url: str, sim: SimulatorServer, *, max_position: dict[str, Decimal] | None = None,
                     poll_interval_s: float = 600.0) -> AsyncIterator[Stack]:  # fmt: skip
    client = BinanceSpotClient(
        "testnet", sim.api_key, sim.api_secret, {"rest": sim.base_url, "ws": sim.ws_url}
    )
    exchange = BinanceExchange(client, poll_interval_s=poll_interval_s)
    stream = UserDataStream.for_profile(
        "testnet", sim.api_key, sim.api_secret, url=f"{sim.ws_url}/ws-api/v3",
        timestamp_ms=client.clock.timestamp_ms, backoff_initial_s=0.02, backoff_max_s=0.1,
    )  # fmt: skip
    exchange.attach_user_stream(stream)
    settings = EngineSettings(
        profile="testnet", safe_mode=False, symbols=("BTCUSDT",),
        approvals=ApprovalSettings(public_keys=APPROVER_KEYS),
        risk=RiskLimits(max_position=max_position or {}, max_orders_per_minute=100_000, max_open_orders=1000),
    )  # fmt: skip
    journal = SqlJournal(db_url)
    engine = Engine(journal, exchange, settings, session_id="testnet")
    try:
        await engine.start()
        await stream.start()
        await eventually(lambda: exchange.stream_live and exchange.order_gate() is None, timeout=10)
        await go_live(engine)
        yield Stack(sim, engine, exchange, stream)
    finally:
        await stream.stop()
        await engine.stop()
        journal.close()
