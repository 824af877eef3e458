"""PaperExchange: the engine's ExchangePort on the in-process matching engine (adapters.venue).

No credentials, no network. The venue speaks Binance's JSON, so the same schemas as the Binance adapter
turn its answers into engine types, and its errors map through the same table (adapters.binance.errors),
so a rejection carries the same `reason` on paper as on Binance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from adapters.binance.errors import Reason, map_binance_error
from adapters.binance.exchange import order_payload
from adapters.binance.schemas import account_from_json, venue_order_from_json
from adapters.venue import MatchingEngine, VenueError
from adapters.venue.orders import Order as VenueSideOrder
from engine.errors import ExchangeError, ExchangeRejected, OrderNotSent
from engine.ports import SendGate
from engine.types import AccountInfo, BalancePush, OrderRequest, PingResult, SymbolRules, VenueOrder

log = logging.getLogger(__name__)


def to_engine_error(exc: VenueError) -> ExchangeError:
    """The engine error for a venue rejection: -1013 FILTER_FAILURE, -1121 INVALID_SYMBOL,
    -2010 INSUFFICIENT_BALANCE / DUPLICATE_ORDER / ORDER_WOULD_TAKE / MARKET_CLOSED / ORDER_REJECTED,
    -2011/-2013 UNKNOWN_ORDER, other -11xx INVALID_PARAMETER; code and msg kept."""
    return map_binance_error(exc.http_status, exc.code, exc.msg)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except VenueError as exc:
        raise to_engine_error(exc) from exc


class PaperExchange:
    """Simulated fills on the synthetic book; resting orders fill when prices move.

    `on_update` listeners hear about changes the caller did not make itself (a resting order filled by a
    price move), like the Binance adapter's poller: the answer of place/cancel already carries the rest.
    """

    venue = "paper"

    def __init__(
        self, engine: MatchingEngine | None = None, clock_ms: Callable[[], int] | None = None
    ) -> None:
        self.engine = engine if engine is not None else MatchingEngine(clock_ms=clock_ms)
        self._listeners: list[Callable[[VenueOrder], None]] = []
        self._caller_cid: str | None = None  # the order our own place/cancel is answering for
        self._driver: asyncio.Task[None] | None = None
        self.engine.add_listener(self._on_engine_event, orders=self._wants)

    # -- reads --

    async def ping(self) -> PingResult:
        return PingResult(server_time_ms=self.engine.now_ms(), clock_skew_ms=0.0, rtt_ms=0.0)

    async def account(self) -> AccountInfo:
        return account_from_json(self.engine.account())

    async def symbol_rules(self) -> dict[str, SymbolRules]:
        return dict(self.engine.rules)

    async def last_price(self, symbol: str) -> Decimal | None:
        return self.engine.prices.get(symbol)

    async def query(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """The venue's view of the order, or None when it says -2013 "Order does not exist."."""
        try:
            with _translated():
                data = self.engine.query(symbol, orig_client_order_id=client_order_id)
        except ExchangeRejected as exc:
            if exc.reason == Reason.UNKNOWN_ORDER.value:
                return None
            raise
        return venue_order_from_json(data)

    async def query_trades(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        order = await self.query(symbol, client_order_id)
        if order is None or order.order_id is None or not order.executed_qty:
            return order
        with _translated():
            trades = self.engine.my_trades(symbol, order_id=order.order_id, limit=1000)
        return venue_order_from_json({**order.raw, "fills": [_fill_of(t) for t in trades]})

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        with _translated():
            return [venue_order_from_json(o) for o in self.engine.open_orders(symbol)]

    def order_gate(self) -> None:
        """The paper venue is in-process: nothing can be missed."""
        return None

    async def key_restrictions(self) -> None:
        """Paper has no API key, so nothing to restrict: the preflight skips the key checks."""
        return None

    # -- writes --

    async def place_test(self, req: OrderRequest) -> dict[str, object]:
        """Validate like POST /api/v3/order/test (shape, precision, filters); executes nothing."""
        with _translated():
            self.engine.validate(_params(req))
        return {}

    async def place(self, req: OrderRequest, *, may_send: SendGate | None = None) -> VenueOrder:
        """Place one order; the FULL answer carries the immediate fills."""
        why = may_send() if may_send is not None else None  # in-process: nothing queues before this
        if why is not None:
            raise OrderNotSent(f"order not sent: {why}", reason=why)
        with self._by_caller(req.client_order_id), _translated():
            return venue_order_from_json(self.engine.place(_params(req)))

    async def cancel(self, symbol: str, client_order_id: str) -> VenueOrder:
        with self._by_caller(client_order_id), _translated():
            return venue_order_from_json(self.engine.cancel(symbol, orig_client_order_id=client_order_id))

    # -- updates --

    def on_update(self, listener: Callable[[VenueOrder], None]) -> None:
        self._listeners.append(listener)

    def on_balances(self, listener: Callable[[BalancePush], None]) -> None:
        """The paper venue pushes no balances: the engine reads the account."""

    def _wants(self, order: VenueSideOrder) -> bool:
        # The order a place/cancel answers for is told by that answer: its events are not even built
        return bool(self._listeners) and order.client_order_id != self._caller_cid

    def _on_engine_event(self, kind: str, payload: dict[str, Any]) -> None:
        # The order a place/cancel answers for is told by that answer; any other order it touched (our
        # own resting order it crossed, expired by self-trade prevention) is pushed like any update
        if kind != "order" or payload.get("clientOrderId") == self._caller_cid or not self._listeners:
            return
        trade = payload.get("lastTrade")
        fills = [] if trade is None else [_fill_of(trade)]
        order = venue_order_from_json({**payload, "fills": fills})
        for listener in self._listeners:
            try:
                listener(order)
            except Exception:
                # A failing listener must not leave the venue half way through a price move
                log.exception("paper order listener failed")

    @contextlib.contextmanager
    def _by_caller(self, client_order_id: str) -> Iterator[None]:
        self._caller_cid = client_order_id
        try:
            yield
        finally:
            self._caller_cid = None

    # -- price driver --

    def start_price_driver(self, interval_s: float) -> None:
        """Step every price by a few ticks every `interval_s` seconds until close()."""
        if self._driver is None or self._driver.done():
            self._driver = asyncio.get_running_loop().create_task(self._drive(interval_s))

    async def _drive(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.engine.step_prices()

    async def close(self) -> None:
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
            self._driver = None
        self.engine.remove_listener(self._on_engine_event)


def _params(req: OrderRequest) -> dict[str, str]:
    # The same parameters the Binance adapter sends, so paper and live validate alike
    return {k: str(v) for k, v in order_payload(req).items()}


def _fill_of(trade: dict[str, Any]) -> dict[str, Any]:
    """A myTrades entry in the `fills[]` shape of an order answer, so updates carry their trade id."""
    return {
        "price": trade["price"],
        "qty": trade["qty"],
        "commission": trade["commission"],
        "commissionAsset": trade["commissionAsset"],
        "tradeId": trade["id"],
    }
