"""The venue's state and its read-only views (order queries, account, trades, book, exchangeInfo).

MatchingEngine (matching.py) adds the mutations on top. Every public method takes the one re-entrant lock.
"""

from __future__ import annotations

import random
import string
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from adapters.venue import book, responses
from adapters.venue import errors as e
from adapters.venue.ledger import Ledger
from adapters.venue.orders import Order, Trade
from adapters.venue.params import lookup_symbol
from adapters.venue.symbols import (
    DEFAULT_BALANCES,
    DEFAULT_PRICES,
    DEFAULT_STP_MODE,
    DEFAULT_SYMBOLS,
    RATE_LIMITS,
    STP_MODES,
    exchange_info_symbol,
    fmt,
)
from engine.types import SymbolRules

Listener = Callable[[str, dict[str, Any]], None]
COMMISSION_RATE = Decimal("0.001")
EIGHT = Decimal("0.00000001")
_ZERO = Decimal(0)
# Small default depth so a large MARKET/IOC order partially fills and a FOK can expire
_ID_CHARS = string.ascii_letters + string.digits
DEFAULT_LEVEL_QTY = {"BTCUSDT": Decimal("0.05"), "ETHUSDT": Decimal(1), "BNBUSDT": Decimal(5)}


def _system_ms() -> int:
    return time.time_ns() // 1_000_000


class VenueState:
    """Orders (never forgotten), trades, balances, reference prices and listeners."""

    def __init__(
        self,
        symbols: dict[str, SymbolRules] | None = None,
        prices: dict[str, Decimal] | None = None,
        balances: dict[str, Decimal] | None = None,
        clock_ms: Callable[[], int] | None = None,
        depth_levels: int = 5,
        level_qty: dict[str, Decimal] | None = None,
        seed: int = 0,
        stp_modes: dict[str, tuple[str, tuple[str, ...]]] | None = None,
    ) -> None:
        """`stp_modes`: per symbol (defaultSelfTradePreventionMode, allowedSelfTradePreventionModes); a
        symbol not named there takes DEFAULT_STP_MODE and every mode of STP_MODES (faqs/stp_faq.md "How do
        I know which symbol uses STP?").

        Raises:
            ValueError: a symbol without a reference price, or an STP default not among its allowed modes.
        """
        for sym, (default, allowed) in (stp_modes or {}).items():
            if default not in allowed or not set(allowed) <= set(STP_MODES):
                raise ValueError(
                    f"{sym}: STP default {default!r} must be one of allowed {allowed!r} of {STP_MODES}"
                )
        self.stp_modes: dict[str, tuple[str, tuple[str, ...]]] = dict(stp_modes or {})
        self.rules: dict[str, SymbolRules] = dict(symbols if symbols is not None else DEFAULT_SYMBOLS)
        given = prices if prices is not None else DEFAULT_PRICES
        missing = [s for s in self.rules if s not in given]
        if missing:
            raise ValueError(f"no reference price for {missing}")
        self.prices: dict[str, Decimal] = {s: Decimal(given[s]) for s in self.rules}
        self.ledger = Ledger(balances if balances is not None else DEFAULT_BALANCES)
        for r in self.rules.values():
            self.ledger.ensure(r.base_asset)
            self.ledger.ensure(r.quote_asset)
        self.depth_levels = depth_levels
        self.level_qty: dict[str, Decimal] = {s: self._default_level_qty(s) for s in self.rules}
        self.level_qty.update(level_qty or {})
        self.can_trade = True
        self._clock = clock_ms or _system_ms
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._lists: dict[int, dict[str, Any]] = {}  # orderListId -> its listStatus fields
        self._orders: dict[int, Order] = {}
        self._by_client: dict[tuple[str, str], Order] = {}
        self._open: dict[str, dict[int, Order]] = {s: {} for s in self.rules}
        self._trades: dict[str, list[Trade]] = {s: [] for s in self.rules}
        self._listeners: list[Listener] = []
        self._wants: dict[Listener, Callable[[Order], bool]] = {}  # a listener's filter on "order" events
        self._next_order_id = 1
        self._next_trade_id = 1
        self._next_agg_id = 1
        self._next_prevented_id: dict[str, int] = {}  # preventedMatchId counts per symbol from 0
        # PENDING_NEW legs of order lists by orderId, with what places them once the working leg fills
        self._pending: dict[int, tuple[Order, Any, SymbolRules]] = {}
        self._triggered: list[int] = []  # working legs that filled: their pending legs go on the book next
        self._next_list_id = 0
        self._book_update_id = 1
        self._update_time = self._clock()

    def _default_level_qty(self, symbol: str) -> Decimal:
        if symbol in DEFAULT_LEVEL_QTY:
            return DEFAULT_LEVEL_QTY[symbol]
        # About 2000 quote units per level, on the lot step
        r = self.rules[symbol]
        return max(book.floor_to_step(Decimal(2000) / self.prices[symbol], r.step_size), r.min_qty, EIGHT)

    def now_ms(self) -> int:
        return self._clock()

    def _agg_id(self) -> int:
        self._next_agg_id += 1
        return self._next_agg_id - 1

    def _new_client_id(self) -> str:
        # Binance's generated ids are 22 random alphanumerics
        return "".join(self._rng.choices(_ID_CHARS, k=22))

    def _release(self, o: Order, amount: Decimal) -> None:
        if amount > 0:
            self.ledger.unlock(o.lock_asset, amount)
            o.locked -= amount

    # ----- listeners -----------------------------------------------------------------------------------

    def add_listener(self, cb: Listener, *, orders: Callable[[Order], bool] | None = None) -> None:
        """cb(kind, payload): "order" (the order dict plus executionType and lastTrade, and
        cancelClientOrderId on a cancel), "trade" (aggTrade stream dict), "book" (bookTicker stream dict).
        `orders` says which orders' "order" events cb wants (default: all); an event that no listener
        wants is not built (an order's JSON with its trade is most of what a paper fill costs)."""
        with self._lock:
            self._listeners.append(cb)
            if orders is not None:
                self._wants[cb] = orders

    def remove_listener(self, cb: Listener) -> None:
        with self._lock:
            if cb in self._listeners:
                self._listeners.remove(cb)
                self._wants.pop(cb, None)

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        for cb in self._listeners:
            cb(kind, payload)

    def _emit_order(self, o: Order, execution: str, trade: Trade | None = None, **extra: Any) -> None:
        if not self._listeners:
            return
        targets = [cb for cb in self._listeners if (wants := self._wants.get(cb)) is None or wants(o)]
        if targets:
            payload = responses.order(o)
            payload["executionType"] = execution
            payload["lastTrade"] = responses.my_trade(trade) if trade is not None else None
            payload.update(extra)
            for cb in targets:
                cb("order", payload)
        if o.order_list_id >= 0 and o.status not in ("NEW", "PARTIALLY_FILLED", "PENDING_NEW"):
            partner = self._orders.get(o.list_partner) if o.list_partner is not None else None
            if partner is None or partner.status not in ("NEW", "PARTIALLY_FILLED", "PENDING_NEW"):
                # every leg is done: the list is too (enums.md "List Status Type" / "List Order Status")
                self._emit_list(o.order_list_id, "ALL_DONE", "ALL_DONE")

    def _emit_list(self, list_id: int, status_type: str, order_status: str) -> None:
        """A `listStatus` for the order list `list_id` (user-data-stream.md "Order Update")."""
        info = self._lists.get(list_id)
        if info is None or not self._listeners or info.get("done"):
            return
        if status_type == "ALL_DONE":
            info["done"] = True
        self._emit("list", {**info["base"], "listStatusType": status_type, "listOrderStatus": order_status,
                            "transactionTime": self._clock()})  # fmt: skip

    def adjust_balance(self, asset: str, delta: Decimal) -> dict[str, Any]:
        """A deposit (delta > 0) or withdrawal (< 0) of free balance, as the wallet would book it; the
        listeners hear it as kind "balance" (the user data stream's `balanceUpdate`).

        Raises:
            ValueError: a withdrawal of more than is free, or a zero or non-finite delta.
        """
        with self._lock:
            if not delta.is_finite() or not delta:
                raise ValueError(f"delta must be a non-zero decimal, was {delta}")
            self.ledger.ensure(asset)
            if self.ledger.free[asset] + delta < 0:
                raise ValueError(f"cannot withdraw {-delta} {asset}: free is {self.ledger.free[asset]}")
            self.ledger.free[asset] += delta
            now = self._clock()
            self._update_time = now
            change = {"asset": asset, "delta": fmt(delta), "time": now}
            if self._listeners:
                self._emit("balance", change)
            return change

    # ----- lookups -------------------------------------------------------------------------------------

    def _find(
        self, symbol: str, order_id: int | None, client_id: str | None, *errs: tuple[int, str]
    ) -> Order:
        """Binance's rule: by orderId first, then check the client id; by client id alone otherwise.

        Raises:
            VenueError: -1102 when neither id is given, else errs[0] (not found) or errs[1] (id mismatch).
        """
        missing, mismatch = errs
        if order_id is None and not client_id:
            raise e.one_of("origClientOrderId", "orderId")
        if order_id is not None:
            found = self._orders.get(order_id)
            if found is None or found.symbol != symbol:
                raise e.err(missing)
            if client_id and found.client_order_id != client_id:
                raise e.err(mismatch)
            return found
        assert client_id is not None
        by_client = self._by_client.get((symbol, client_id))
        if by_client is None:
            raise e.err(missing)
        return by_client

    def _levels(self, symbol: str, is_buy: bool) -> list[book.Level]:
        """The side an aggressive order of this direction takes from: asks for a buy."""
        r, ref = self.rules[symbol], self.prices[symbol]
        side = book.asks if is_buy else book.bids
        return side(ref, r.tick_size or EIGHT, self.depth_levels, self.level_qty[symbol])

    # ----- read-only views -----------------------------------------------------------------------------

    def query(
        self, symbol: str, order_id: int | None = None, orig_client_order_id: str | None = None
    ) -> dict[str, Any]:
        """GET /api/v3/order.

        Raises:
            VenueError: -1121, -1102, -2013 "Order does not exist.", -2039 on an id mismatch.
        """
        with self._lock:
            lookup_symbol(symbol, self.rules)
            return responses.order(
                self._find(symbol, order_id, orig_client_order_id, e.NO_SUCH_ORDER, e.CLIENT_ID_MISMATCH)
            )

    def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """GET /api/v3/openOrders, oldest first.

        Raises:
            VenueError: -1121 for an unknown symbol.
        """
        with self._lock:
            if symbol is not None:
                lookup_symbol(symbol, self.rules)
            books = [self._open[symbol]] if symbol is not None else list(self._open.values())
            found = [o for b in books for o in b.values()]
            # pending order-list legs are accepted by the engine, not yet on the book (faqs/spot_glossary.md
            # "PENDING_NEW"); openOrders lists them with that status
            found += [p for p, _, _ in self._pending.values() if symbol is None or p.symbol == symbol]
            return [responses.order(o) for o in sorted(found, key=lambda o: o.order_id)]

    def account(self, omit_zero_balances: bool = False) -> dict[str, Any]:
        """GET /api/v3/account."""
        with self._lock:
            led = self.ledger
            balances = [
                {"asset": a, "free": fmt(led.free[a]), "locked": fmt(led.locked[a])}
                for a in led.assets()
                if not omit_zero_balances or led.free[a] or led.locked[a]
            ]
            rate = fmt(COMMISSION_RATE)
            return {
                "makerCommission": 10,
                "takerCommission": 10,
                "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {"maker": rate, "taker": rate, "buyer": fmt(_ZERO), "seller": fmt(_ZERO)},
                "canTrade": self.can_trade,
                "canWithdraw": False,
                "canDeposit": False,
                "brokered": False,
                "requireSelfTradePrevention": False,
                "preventSor": False,
                "updateTime": self._update_time,
                "accountType": "SPOT",
                "balances": balances,
                "permissions": ["SPOT"],
                "uid": 1,
            }

    def my_trades(
        self,
        symbol: str,
        order_id: int | None = None,
        from_id: int | None = None,
        limit: int = 500,
        start_time: int | None = None,
        end_time: int | None = None,
        visible_until: int | None = None,
    ) -> list[dict[str, Any]]:
        """GET /api/v3/myTrades, oldest first (rest-api.md "Account trade list"): trades >= `from_id`, or
        from `start_time`, are the first `limit` of them; otherwise the most recent `limit`. `limit` is
        clamped to Binance's 1..1000 (the simulator's handler refuses values outside it). `visible_until`:
        trades after this time are not in the database yet (the simulator's trades-lag fault).

        Raises:
            VenueError: -1121 for an unknown symbol.
        """
        with self._lock:
            lookup_symbol(symbol, self.rules)
            trades = [
                t
                for t in self._trades[symbol]
                if (order_id is None or t.order_id == order_id)
                and (from_id is None or t.id >= from_id)
                and (start_time is None or t.time >= start_time)
                and (end_time is None or t.time <= end_time)
                and (visible_until is None or t.time <= visible_until)
            ]
            n = max(1, min(limit, 1000))
            chosen = trades[:n] if from_id is not None or start_time is not None else trades[-n:]
            return [responses.my_trade(t) for t in chosen]

    def book_ticker(self, symbol: str) -> dict[str, Any]:
        """GET /api/v3/ticker/bookTicker for one symbol.

        Raises:
            VenueError: -1121 for an unknown symbol.
        """
        with self._lock:
            lookup_symbol(symbol, self.rules)
            return self._ticker(symbol)

    def _ticker(self, symbol: str) -> dict[str, Any]:
        bids, asks = self._levels(symbol, False), self._levels(symbol, True)
        return responses.book_ticker(symbol, bids[0] if bids else (_ZERO, _ZERO), asks[0])

    def depth(self, symbol: str, limit: int = 100) -> dict[str, Any]:
        """GET /api/v3/depth of the synthetic book.

        Raises:
            VenueError: -1121 for an unknown symbol.
        """
        with self._lock:
            lookup_symbol(symbol, self.rules)
            return {
                "lastUpdateId": self._book_update_id,
                "bids": [[fmt(p), fmt(q)] for p, q in self._levels(symbol, False)[:limit]],
                "asks": [[fmt(p), fmt(q)] for p, q in self._levels(symbol, True)[:limit]],
            }

    def exchange_info(self, symbols: list[str] | None = None) -> dict[str, Any]:
        """GET /api/v3/exchangeInfo, optionally narrowed to `symbols`.

        Raises:
            VenueError: -1121 when a requested symbol is unknown.
        """
        with self._lock:
            chosen = [lookup_symbol(s, self.rules) for s in symbols] if symbols else list(self.rules.values())
            return {
                "timezone": "UTC",
                "serverTime": self._clock(),
                "rateLimits": [dict(r) for r in RATE_LIMITS],
                "exchangeFilters": [],
                "symbols": [self._with_stp(exchange_info_symbol(r)) for r in chosen],
            }

    def stp_of(self, symbol: str) -> tuple[str, tuple[str, ...]]:
        """(default mode, allowed modes) of one symbol."""
        return self.stp_modes.get(symbol, (DEFAULT_STP_MODE, STP_MODES))

    def _with_stp(self, entry: dict[str, Any]) -> dict[str, Any]:
        default, allowed = self.stp_of(entry["symbol"])
        entry["defaultSelfTradePreventionMode"] = default
        entry["allowedSelfTradePreventionModes"] = list(allowed)
        return entry

    def ground_truth(self) -> list[dict[str, Any]]:
        """Every order ever accepted, oldest first, with its current status and its trades."""
        with self._lock:
            out = []
            for o in self._orders.values():
                item = responses.order(o)
                item["trades"] = [responses.my_trade(t) for t in o.trades]
                out.append(item)
            return out

    def fees_collected(self) -> dict[str, Decimal]:
        """Commission taken so far, per asset."""
        with self._lock:
            return dict(self.ledger.fees)
