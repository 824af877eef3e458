"""BinanceExchange: engine.ports.ExchangePort on BinanceSpotClient.

Order updates (`on_update`) come from the user data stream when one is attached (`attach_user_stream`:
executionReport events over the WebSocket API, each TRADE with its trade id, price and commission;
user-data-stream.md). Polling is the fallback while the stream is down: every `poll_interval_s` it lists
open orders for each symbol it tracks and queries the ones that left the open list (6 weight per symbol
and round, plus 4 per order that closed). Every (re)subscription also runs one polling round, so what
happened during a gap is learned by REST (Binance does not replay missed events).

Fills learned by REST carry their trades: an order whose executedQty moved past what this adapter last saw
(GET /order, openOrders and DELETE /order carry no `fills`) is completed from GET /api/v3/myTrades with
symbol + orderId (weight 5, paged by fromId; rest-api.md "Account trade list"), so each fill reaches the
engine with its trade id, price, quantity, commission and maker flag exactly as an executionReport would,
and the engine's dedup by trade id drops what the stream delivered already.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from adapters.binance.errors import Reason
from adapters.binance.rest import BinanceSpotClient
from adapters.binance.schemas import (
    account_from_json,
    fill_from_trade,
    symbol_rules_from_json,
    venue_order_from_json,
)
from adapters.binance.signing import format_value
from engine.errors import ExchangeError, ExchangeRejected
from engine.ports import SendGate
from engine.types import (
    AccountInfo,
    Balance,
    BalancePush,
    Fill,
    OrderRequest,
    PingResult,
    SymbolRules,
    VenueOrder,
    VenueStatus,
)

log = logging.getLogger(__name__)

_TERMINAL = frozenset(
    {
        VenueStatus.FILLED,
        VenueStatus.CANCELED,
        VenueStatus.REJECTED,
        VenueStatus.EXPIRED,
        VenueStatus.EXPIRED_IN_MATCH,
    }
)
_TRADES_PAGE = 1000  # myTrades' maximum `limit` (rest-api.md)


def order_payload(req: OrderRequest) -> dict[str, Any]:
    """POST /api/v3/order parameters for a request; FULL answers carry the fills."""
    payload: dict[str, Any] = {"symbol": req.symbol, "side": req.side.value, "type": req.type.value}
    for key, val in (
        ("timeInForce", req.time_in_force),
        ("quantity", req.quantity),
        ("quoteOrderQty", req.quote_order_qty),
        ("price", req.price),
        ("stopPrice", req.stop_price),
    ):
        if val is not None:
            payload[key] = format_value(val)
    payload["newClientOrderId"] = req.client_order_id
    payload["newOrderRespType"] = "FULL"
    return payload


class BinanceExchange:
    """Binance Spot (live, testnet or the simulator) behind the engine's ExchangePort."""

    def __init__(
        self,
        client: BinanceSpotClient,
        *,
        venue: str | None = None,
        poll_interval_s: float = 2.0,
        rules_ttl_s: float = 3600.0,
        max_misses: int = 30,
        has_sapi: bool | None = None,
        restrictions_ttl_s: float = 60.0,
        stp_mode: str | None = None,
        symbols: tuple[str, ...] | None = None,
        trades_attempts: int = 3,
        trades_retry_s: float = 0.2,
    ) -> None:
        """`stp_mode` is the selfTradePreventionMode the client sends (None: each symbol's default);
        symbol_rules() refuses it when one of `symbols` (all symbols when None) does not allow it."""
        self.client = client
        self.stp_mode = stp_mode
        self.symbols = symbols
        self.venue = venue or f"binance-{client.profile}"
        self.poll_interval_s = poll_interval_s
        self.rules_ttl_s = rules_ttl_s
        # /sapi exists on live only (Spot Testnet has none); the simulator serves it when told to
        self.has_sapi = client.profile == "live" if has_sapi is None else has_sapi
        self.restrictions_ttl_s = restrictions_ttl_s
        self._restrictions: dict[str, Any] | None = None
        self._restrictions_at = 0.0
        self._restrictions_lock = asyncio.Lock()
        self._rules: dict[str, SymbolRules] | None = None
        self._rules_at = 0.0
        self._listeners: list[Callable[[VenueOrder], None]] = []
        self._balance_listeners: list[Callable[[BalancePush], None]] = []
        self._tracked: dict[tuple[str, str], VenueOrder | None] = {}  # (symbol, client id) → last seen
        self._misses: dict[tuple[str, str], int] = {}
        self.max_misses = max_misses
        self._poller: asyncio.Task[None] | None = None
        self.user_stream: Any = None  # adapters.binance.user_stream.UserDataStream, when attached
        self.stream_live = False  # a subscription is live: polling pauses
        self.stream_gaps = 0
        self._catch_up: asyncio.Task[None] | None = None
        self._catch_up_again = False
        # myTrades reads from "Memory => Database" (rest-api.md): a trade may show there a moment after the
        # order's executedQty; asked again this many times, this far apart, before giving up on it
        self.trades_attempts = max(1, trades_attempts)
        self.trades_retry_s = trades_retry_s
        self.trade_requests = 0

    # -- reads --

    async def ping(self) -> PingResult:
        """Resync the server clock (several /time samples) and report the skew of the best one."""
        best = await self.client.clock.resync()
        return PingResult(
            server_time_ms=best.server_time_ms, clock_skew_ms=best.offset_ms, rtt_ms=best.rtt_ms
        )

    async def account(self) -> AccountInfo:
        return account_from_json(await self.client.account())

    async def symbol_rules(self) -> dict[str, SymbolRules]:
        now = asyncio.get_running_loop().time()
        if self._rules is None or now - self._rules_at > self.rules_ttl_s:
            info = await self.client.exchange_info()
            entries = info.get("symbols", ())
            self._check_stp(entries)  # before caching: a refusal is asked again next time
            self._rules = {s["symbol"]: symbol_rules_from_json(s) for s in entries}
            self._rules_at = now
        return self._rules

    def _check_stp(self, entries: Any) -> None:
        """Fail closed when a configured symbol does not allow the configured STP mode.

        Raises:
            ExchangeRejected: reason STP_MODE_NOT_ALLOWED, naming the symbols and what they allow.
        """
        if self.stp_mode is None:
            return
        wanted = None if self.symbols is None else set(self.symbols)
        refused: dict[str, list[str]] = {}
        for entry in entries:
            if wanted is not None and entry.get("symbol") not in wanted:
                continue
            allowed = entry.get("allowedSelfTradePreventionModes")
            # not listed (or not a list) cannot be checked: refused as well
            modes = [str(m) for m in allowed] if isinstance(allowed, list) else []
            if self.stp_mode not in modes:
                refused[str(entry.get("symbol"))] = modes
        if refused:
            names = "; ".join(
                f"{sym} allows {', '.join(modes) or 'none listed'}" for sym, modes in sorted(refused.items())
            )
            raise ExchangeRejected(
                f"selfTradePreventionMode {self.stp_mode} is not allowed: {names}",
                reason="STP_MODE_NOT_ALLOWED",
            )

    async def last_price(self, symbol: str) -> Decimal | None:
        """Mid of the best bid and ask; one side when the other is empty; None for an empty book."""
        data = await self.client.book_ticker(symbol)
        bid, ask = Decimal(str(data.get("bidPrice") or 0)), Decimal(str(data.get("askPrice") or 0))
        if bid and ask:
            return (bid + ask) / 2
        return bid or ask or None

    def order_gate(self) -> str | None:
        """With a user data stream attached, new orders wait while it is down or while the REST round
        after a (re)subscription is still learning what the gap hid (user-data-stream.md: Binance does
        not replay missed events)."""
        if self.user_stream is None:
            return None
        if not self.stream_live:
            return "user data stream is down: fills may be missing until it is back and reconciled"
        if self._catch_up is not None and not self._catch_up.done():
            return "reconciling the user data stream's gap by REST"
        return None

    async def key_restrictions(self) -> dict[str, Any] | None:
        """The API key's restrictions (GET /sapi/v1/account/apiRestrictions) on live, cached for
        `restrictions_ttl_s`; None where the venue has no /sapi (testnet), without sending anything.

        Raises:
            ExchangeRejected / ExchangeUnavailable: from the request; failures are not cached.
        """
        if not self.has_sapi:
            return None
        async with self._restrictions_lock:  # concurrent preflights share one request
            now = asyncio.get_running_loop().time()
            if self._restrictions is None or now - self._restrictions_at >= self.restrictions_ttl_s:
                self._restrictions = await self.client.api_restrictions()
                self._restrictions_at = now
            return dict(self._restrictions)

    async def _get_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """GET /order by client order id, or None on -2013."""
        try:
            data = await self.client.query_order({"symbol": symbol, "origClientOrderId": client_order_id})
        except ExchangeRejected as exc:
            if exc.reason == Reason.UNKNOWN_ORDER.value:
                return None
            raise
        return venue_order_from_json(data)

    async def query(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """The venue's view, or None on -2013. Never resends anything."""
        order = await self._get_order(symbol, client_order_id)
        if order is None:
            return None
        order = await self._with_trades(order)
        self._watch(order)
        return order

    async def query_trades(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """GET /order, then its trades from GET /myTrades (symbol + orderId) whenever it has filled."""
        order = await self._get_order(symbol, client_order_id)
        if order is None or order.order_id is None or order.executed_qty <= 0:
            return order
        return replace(order, fills=await self.order_trades(order))

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        orders = [
            venue_order_from_json(o)
            for o in await self.client.open_orders({"symbol": symbol} if symbol else None)
        ]
        for order in orders:
            self._watch(order)
        return orders

    def _watch(self, order: VenueOrder) -> None:
        """Orders we learn about by asking (startup reconciliation, adoption) are polled from now on too,
        not only those this process placed: their fills must reach the engine after a restart."""
        if order.status not in _TERMINAL and (order.symbol, order.client_order_id) not in self._tracked:
            self._seen(order, notify=False)
            self._ensure_poller()

    # -- writes --

    async def place_test(self, req: OrderRequest) -> dict[str, object]:
        return await self.client.order_test(order_payload(req))

    async def place(self, req: OrderRequest, *, may_send: SendGate | None = None) -> VenueOrder:
        """POST /api/v3/order once. ExecutionStatusUnknown means: reconcile with query(), never resend."""
        key = (req.symbol, req.client_order_id)
        self._tracked.setdefault(key, None)
        self._ensure_poller()
        try:
            data = await self.client.order(order_payload(req), may_send=may_send)
        except ExchangeRejected:
            self._tracked.pop(key, None)  # final: nothing to watch
            raise
        # ExecutionStatusUnknown keeps the order tracked: the poller reports it if it turns up
        order = venue_order_from_json(data)
        self._seen(order, notify=False)
        return order

    async def cancel(self, symbol: str, client_order_id: str) -> VenueOrder:
        order = venue_order_from_json(
            await self.client.cancel({"symbol": symbol, "origClientOrderId": client_order_id})
        )
        self._seen(order, notify=False)
        return order

    # -- updates --

    def on_update(self, listener: Callable[[VenueOrder], None]) -> None:
        self._listeners.append(listener)

    def on_balances(self, listener: Callable[[BalancePush], None]) -> None:
        self._balance_listeners.append(listener)

    def attach_user_stream(self, stream: Any) -> None:
        """Take order and balance updates from `stream` (a UserDataStream); it is started and stopped by
        its owner."""
        self.user_stream = stream
        stream.on_order = self._pushed
        stream.on_balances = self._pushed_position
        stream.on_event = self._pushed_event
        stream.on_gap = self._stream_gap
        stream.on_subscribed = self._stream_subscribed

    def _pushed(self, order: VenueOrder) -> None:
        self._tracked.setdefault((order.symbol, order.client_order_id), None)
        self._seen(order)

    def _pushed_position(self, balances: list[Balance], event: dict[str, Any]) -> None:
        """outboundAccountPosition: absolute balances of the assets the event changed, as of `u`."""
        time_ms = event.get("u", event.get("E"))
        if not isinstance(time_ms, int):
            log.warning("outboundAccountPosition without a time: %.200r", event)
            return
        self._tell_balances(BalancePush("position", time_ms, tuple(balances)))

    def _pushed_event(self, event: dict[str, Any]) -> None:
        """balanceUpdate (a deposit, withdrawal or transfer): one asset's delta at clear time `T`."""
        if event.get("e") != "balanceUpdate":
            return
        try:
            asset, delta, time_ms = str(event["a"]), Decimal(str(event["d"])), int(event["T"])
        except (KeyError, TypeError, ValueError, ArithmeticError):
            log.warning("balanceUpdate not understood: %.200r", event)
            return
        if asset and delta.is_finite():
            self._tell_balances(BalancePush("delta", time_ms, asset=asset, delta=delta))

    def _tell_balances(self, push: BalancePush) -> None:
        for listener in self._balance_listeners:
            listener(push)

    def _stream_gap(self, reason: str) -> None:
        # Events may be missing until the next subscription: the poller takes over meanwhile
        self.stream_live = False
        self.stream_gaps += 1
        log.warning("user data stream gap (%s): polling until it is back", reason)
        self._ensure_poller()
        stream = self.user_stream
        if stream is not None and stream.status().get("connected"):
            # An event was missed on a subscription that is still live (no resubscription will follow to
            # trigger the catch-up): reconcile by REST now; new orders wait for it (order_gate)
            self._stream_subscribed(None)

    def _stream_subscribed(self, _subscription_id: int | None) -> None:
        self.stream_live = True
        if not self._listeners:
            return
        if self._catch_up is not None and not self._catch_up.done():
            self._catch_up_again = True  # the round under way may have passed what this gap hid
            return
        # Close the gap by REST: whatever changed while nobody was listening
        self._catch_up = asyncio.get_running_loop().create_task(
            self._catch_up_rounds(), name="binance-catch-up"
        )

    async def _catch_up_rounds(self) -> None:
        while True:
            self._catch_up_again = False
            await self._poll_safely()
            if not self._catch_up_again:
                return

    async def _poll_safely(self) -> None:
        try:
            await self.poll_once()
        except ExchangeError as exc:
            log.warning("catch-up poll failed: %s (%s); the poller retries", exc, exc.reason)
            self.stream_live = False
            self._ensure_poller()

    async def poll_once(self) -> list[VenueOrder]:
        """One polling round; returns (and tells listeners about) the orders that changed, each fill with
        its trades (myTrades for the orders whose executedQty moved)."""
        changed: list[VenueOrder] = []
        for symbol in sorted({s for s, _ in self._tracked}):
            moved: list[VenueOrder] = []
            open_now = {o.client_order_id: o for o in await self.open_orders(symbol)}
            for order in open_now.values():
                self._tracked.setdefault((symbol, order.client_order_id), None)
                if self._differs(order):
                    moved.append(await self._with_trades(order))
            for (sym, cid), last in list(self._tracked.items()):
                if sym != symbol or cid in open_now or (last is not None and last.status in _TERMINAL):
                    continue
                found = await self.query(sym, cid)  # with its trades already
                if found is None:
                    # "Not found" can lag the send by a minute: give up only after max_misses rounds
                    self._misses[(sym, cid)] = misses = self._misses.get((sym, cid), 0) + 1
                    if misses >= self.max_misses:
                        del self._tracked[(sym, cid)]
                        self._misses.pop((sym, cid), None)
                elif self._differs(found):
                    moved.append(found)
            changed.extend(order for order in moved if self._seen(order))
            # Terminal orders were reported; forget them
            for key, last in list(self._tracked.items()):
                if key[0] == symbol and last is not None and last.status in _TERMINAL:
                    del self._tracked[key]
                    self._misses.pop(key, None)
        return changed

    def _differs(self, order: VenueOrder) -> bool:
        last = self._tracked.get((order.symbol, order.client_order_id))
        return last is None or (last.status, last.executed_qty) != (order.status, order.executed_qty)

    async def _with_trades(self, order: VenueOrder) -> VenueOrder:
        """`order` with the trades behind its executedQty when it moved past what was last seen and the
        answer carries none (GET /order, openOrders: no `fills`)."""
        last = self._tracked.get((order.symbol, order.client_order_id))
        before = last.executed_qty if last is not None else Decimal(0)
        if order.fills or order.order_id is None or order.executed_qty <= before:
            return order
        fills: tuple[Fill, ...] = ()
        for attempt in range(self.trades_attempts):
            fills = await self.order_trades(order)
            if sum((f.qty for f in fills), Decimal(0)) >= order.executed_qty:
                break
            if attempt + 1 < self.trades_attempts:
                await asyncio.sleep(self.trades_retry_s * (attempt + 1))
        else:
            log.warning(
                "myTrades shows less than executedQty %s for %s %s: journaled with the trades it shows",
                order.executed_qty, order.symbol, order.client_order_id,
            )  # fmt: skip
        return replace(order, fills=fills)

    async def order_trades(self, order: VenueOrder) -> tuple[Fill, ...]:
        """The order's trades, oldest first, from GET /api/v3/myTrades with symbol + orderId (weight 5),
        paged by fromId (symbol + orderId + fromId is a supported combination). Cut at the order's
        executedQty, so they never claim more than the snapshot they complete (a trade after it comes with
        its own update)."""
        params: dict[str, Any] = {"symbol": order.symbol, "orderId": order.order_id, "limit": _TRADES_PAGE}
        rows: list[dict[str, Any]] = []
        while True:
            self.trade_requests += 1
            page = await self.client.my_trades(params)
            rows.extend(page)
            if len(page) < _TRADES_PAGE:
                break
            params = {**params, "fromId": max(int(t["id"]) for t in page) + 1}
        fills: list[Fill] = []
        total = Decimal(0)
        for fill in sorted((fill_from_trade(t) for t in rows), key=lambda f: f.trade_id):
            if total + fill.qty > order.executed_qty:
                break
            fills.append(fill)
            total += fill.qty
        return tuple(fills)

    def _seen(self, order: VenueOrder, *, notify: bool = True) -> bool:
        key = (order.symbol, order.client_order_id)
        last = self._tracked.get(key)
        # The same view again, or a stale one (REST answered before a pushed fill arrived): nothing new
        if last is not None and (
            (last.status, last.executed_qty) == (order.status, order.executed_qty)
            or order.executed_qty < last.executed_qty
        ):
            if notify and order.pushed and order.fills:
                # ...except a stream report's trades, which a REST view may have counted without them
                # (GET /myTrades behind GET /order): the engine keeps the ones it lacks (engine.late_trades)
                self._tell(order)
            return False
        self._tracked[key] = order
        if notify:
            self._tell(order)
        return True

    def _tell(self, order: VenueOrder) -> None:
        for listener in self._listeners:
            listener(order)

    def _ensure_poller(self) -> None:
        if self._listeners and self.poll_interval_s > 0 and (self._poller is None or self._poller.done()):
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever(), name="binance-poller")

    async def _poll_forever(self) -> None:
        while self._tracked:
            await asyncio.sleep(self.poll_interval_s)
            if self.stream_live:
                continue  # the stream pushes every change; polling is only its fallback
            try:
                await self.poll_once()
            except ExchangeError as exc:
                log.warning("order poll failed: %s (%s)", exc, exc.reason)
                continue
            stream = self.user_stream
            if stream is not None and stream.status().get("connected"):
                self.stream_live = True  # this round closed the gap of a subscription that stayed up

    # -- lifecycle and status --

    def status(self) -> dict[str, Any]:
        return {
            "rate_limit": self.client.governor.status(),
            "clock": self.client.clock.status(),
            "tracked_orders": len(self._tracked),
            "user_stream": None
            if self.user_stream is None
            else {"live": self.stream_live, "gaps": self.stream_gaps},
        }

    async def close(self) -> None:
        if self._catch_up is not None:
            self._catch_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._catch_up
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.client.aclose()
