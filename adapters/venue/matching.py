"""MatchingEngine: a Binance-compatible spot venue, pure and synchronous (no I/O, no threads of its own).

Aggressive orders fill against a synthetic book around each symbol's reference price (adapters.venue.book);
resting LIMIT orders fill at their own price when set_price moves the reference through them, at most
`level_qty` per move so partial fills happen. An aggressive order that crosses the account's own resting
orders meets them in price order together with the synthetic book, and self-trade prevention decides
(faqs/stp_faq.md): NONE trades with itself, EXPIRE_TAKER / EXPIRE_MAKER / EXPIRE_BOTH expire the taker's,
the maker's or both remaining quantities, DECREMENT (and TRANSFER, which is DECREMENT within one account)
prevents the smaller quantity on both and expires the smaller order (both when equal). The taker's mode
decides; expired orders are EXPIRED_IN_MATCH with `preventedQuantity`. One re-entrant lock
guards every public method; listeners run under it, in event order, and must be quick.

Where Binance is not documented the choices are: a cancel whose orderId and origClientOrderId disagree
answers -2011 (queries answer -2039, as documented); client ids are unique per symbol among open orders;
validate() by default skips the engine-side checks, as Binance's /order/test does.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from adapters.venue import book, responses
from adapters.venue import errors as e
from adapters.venue.orders import Order, Trade
from adapters.venue.params import OrderSpec, check_filters, is_stop, lookup_symbol, parse_order
from adapters.venue.state import COMMISSION_RATE, EIGHT, VenueState
from engine.types import SymbolRules

_ZERO = Decimal(0)
_RESTRICTIONS = {"ONLY_NEW": "NEW", "ONLY_PARTIALLY_FILLED": "PARTIALLY_FILLED"}


class MatchingEngine(VenueState):
    """Binance Spot semantics for one account; every answer is Binance's JSON shape."""

    # ----- new orders ----------------------------------------------------------------------------------

    def validate(self, params: dict[str, str], engine_checks: bool = False) -> None:
        """The checks of POST /api/v3/order/test: shape, symbol, precision and filters.

        Binance's test endpoint never reaches the matching engine, so market status, supported type,
        duplicate id, balance and LIMIT_MAKER crossing are only checked with `engine_checks=True`.

        Raises:
            VenueError: the code and message Binance would send.
        """
        with self._lock:
            spec, rules = self._precheck(params)
            if engine_checks:
                self._engine_checks(spec, rules)

    def place(self, params: dict[str, str]) -> dict[str, Any]:
        """POST /api/v3/order with Binance's string parameters; answers ACK, RESULT or FULL.

        Raises:
            VenueError: the code and message Binance would send; nothing is executed then.
        """
        with self._lock:
            spec, rules = self._precheck(params)
            plan, lock_asset, lock_amount = self._engine_checks(spec, rules)
            return self._execute(spec, rules, plan, lock_asset, lock_amount)

    def _precheck(self, params: dict[str, str]) -> tuple[OrderSpec, SymbolRules]:
        spec, rules = parse_order(params, self.rules, self.stp_modes)
        check_filters(spec, rules, self.prices[spec.symbol], len(self._open[spec.symbol]))
        return spec, rules

    def _engine_checks(self, spec: OrderSpec, rules: SymbolRules) -> tuple[list[book.Level], str, Decimal]:
        """The matching engine's own -2010 rejections; returns the planned fills and what to lock."""
        if rules.status != "TRADING" or not self.can_trade:
            raise e.rejected(e.MARKET_CLOSED)
        if spec.type not in rules.order_types or is_stop(spec.type):
            msg = e.UNSUPPORTED_TYPE_MSG.get(spec.type)
            raise e.rejected(msg) if msg else e.VenueError(-1014, "Unsupported order combination.")
        if spec.client_order_id is not None:
            prior = self._by_client.get((spec.symbol, spec.client_order_id))
            if prior is not None and prior.is_open:
                raise e.rejected(e.DUPLICATE_ORDER)
        plan = self._plan(spec, rules)
        if spec.side == "BUY":
            asset = rules.quote_asset
            if spec.type != "MARKET":
                amount = (spec.quantity or _ZERO) * (spec.price or _ZERO)
            elif spec.quote_qty is not None:
                amount = spec.quote_qty
            else:
                amount = sum((p * q for p, q in plan), _ZERO)
        else:
            asset = rules.base_asset
            amount = spec.quantity if spec.quantity is not None else book.total_qty(plan)
        if not self.ledger.can_lock(asset, amount):
            raise e.rejected(e.INSUFFICIENT_BALANCE)
        if spec.type == "LIMIT_MAKER" and self._crosses(spec):
            raise e.rejected(e.WOULD_TAKE)
        return plan, asset, amount

    def _crosses(self, spec: OrderSpec) -> bool:
        best = self._levels(spec.symbol, spec.side == "BUY")[:1]
        if not best or spec.price is None:
            return False
        return spec.price >= best[0][0] if spec.side == "BUY" else spec.price <= best[0][0]

    def _plan(self, spec: OrderSpec, rules: SymbolRules) -> list[book.Level]:
        """The fills the order would take from the synthetic book right now."""
        if spec.type == "LIMIT_MAKER":
            return []
        is_buy = spec.side == "BUY"
        levels = self._levels(spec.symbol, is_buy)
        if spec.type == "MARKET":
            step = rules.step_size or rules.market_step_size
            return book.sweep(levels, is_buy=is_buy, qty=spec.quantity, quote_qty=spec.quote_qty, step=step)
        plan = book.sweep(levels, is_buy=is_buy, qty=spec.quantity, limit=spec.price)
        if spec.time_in_force == "FOK" and book.total_qty(plan) < (spec.quantity or _ZERO):
            return []
        return plan

    def _execute(
        self,
        spec: OrderSpec,
        rules: SymbolRules,
        plan: list[book.Level],
        lock_asset: str,
        lock_amount: Decimal,
        order_list_id: int = -1,
    ) -> dict[str, Any]:
        now = self._clock()
        o = Order(
            order_id=self._next_order_id,
            symbol=spec.symbol,
            client_order_id=spec.client_order_id or self._new_client_id(),
            side=spec.side,
            type=spec.type,
            time_in_force=spec.time_in_force or "GTC",
            price=spec.price or _ZERO,
            # A quoteOrderQty order's quantity is whatever the quote amount buys
            orig_qty=spec.quantity if spec.quantity is not None else book.total_qty(plan),
            orig_quote_qty=spec.quote_qty or _ZERO,
            stop_price=spec.stop_price or _ZERO,
            stp_mode=spec.stp_mode,
            time=now,
            base_asset=rules.base_asset,
            quote_asset=rules.quote_asset,
            update_time=now,
            working_time=now,
            lock_asset=lock_asset,
            locked=lock_amount,
            order_list_id=order_list_id,
        )
        self._next_order_id += 1
        self.ledger.lock(lock_asset, lock_amount)
        self._orders[o.order_id] = o
        self._by_client[(o.symbol, o.client_order_id)] = o
        self._emit_order(o, "NEW")
        trades = self._sweep(o, plan, now)
        self._settle(o, plan, now)
        self._run_triggers(now)
        return responses.placed(o, spec.resp_type, now, trades)

    def _settle(self, o: Order, plan: list[book.Level], now: int) -> None:
        """After the taker phase: rest, expire, or release what a finished order still holds."""
        if o.status == "EXPIRED_IN_MATCH":
            self._release(o, o.locked)
        elif o.remaining > 0 and o.type != "MARKET" and o.time_in_force == "GTC":
            self._open[o.symbol][o.order_id] = o
            self._release(o, o.locked - o.lock_needed())
        elif o.status != "FILLED" or self._ran_dry(o, plan):
            self._expire(o, now)
        else:
            self._release(o, o.locked)
        self._update_time = now

    # ----- order lists (OTO) ---------------------------------------------------------------------------

    def place_oto(self, working: dict[str, str], pending: dict[str, str]) -> dict[str, Any]:
        """An OTO-like pair: the working leg goes on the book now (NEW), the pending leg is accepted as
        PENDING_NEW with the same orderListId and goes on the book when the working leg fully fills
        (rest-api.md "New Order list - OTO"; faqs/spot_glossary.md "Pending order"). Cancelling either
        leg cancels the list.

        Raises:
            VenueError: as for place() for either leg; -1128 when the legs' symbols differ or the working
                leg is not LIMIT/LIMIT_MAKER. Nothing is executed then.
        """
        with self._lock:
            wspec, wrules = self._precheck(working)
            pspec, prules = self._precheck(pending)
            if pspec.symbol != wspec.symbol or wspec.type not in ("LIMIT", "LIMIT_MAKER"):
                raise e.VenueError(-1128, "Combination of optional parameters invalid.")
            if pspec.client_order_id is not None and pspec.client_order_id == wspec.client_order_id:
                raise e.rejected(e.DUPLICATE_ORDER)
            plan, asset, amount = self._engine_checks(wspec, wrules)
            list_id, self._next_list_id = self._next_list_id, self._next_list_id + 1
            now = self._clock()
            w_answer = self._execute(wspec, wrules, plan, asset, amount, order_list_id=list_id)
            w = self._orders[int(w_answer["orderId"])]
            p = Order(
                order_id=self._next_order_id,
                symbol=pspec.symbol,
                client_order_id=pspec.client_order_id or self._new_client_id(),
                side=pspec.side,
                type=pspec.type,
                time_in_force=pspec.time_in_force or "GTC",
                price=pspec.price or _ZERO,
                orig_qty=pspec.quantity or _ZERO,
                orig_quote_qty=pspec.quote_qty or _ZERO,
                stop_price=pspec.stop_price or _ZERO,
                stp_mode=pspec.stp_mode,
                time=now,
                base_asset=prules.base_asset,
                quote_asset=prules.quote_asset,
                status="PENDING_NEW",
                update_time=now,
                order_list_id=list_id,
                list_partner=w.order_id,
            )
            self._next_order_id += 1
            w.list_partner = p.order_id
            self._orders[p.order_id] = p
            self._by_client[(p.symbol, p.client_order_id)] = p
            self._pending[p.order_id] = (p, pspec, prules)
            list_client_id = self._new_client_id()
            self._lists[list_id] = {"base": {
                "symbol": w.symbol, "orderListId": list_id, "contingencyType": "OTO",
                "listClientOrderId": list_client_id,
                "orders": [{"symbol": x.symbol, "orderId": x.order_id, "clientOrderId": x.client_order_id}
                           for x in (w, p)],
            }}  # fmt: skip
            self._emit_list(list_id, "EXEC_STARTED", "EXECUTING")
            self._emit_order(p, "NEW")
            # rest-api.md "New Order list - OTO": when the working order fills at once, the answer still
            # shows the pending order as PENDING_NEW (query it again for its new status)
            reports = [responses.result(w, now), responses.result(p, now)]
            if w.status == "FILLED":
                self._triggered.append(w.order_id)
            self._run_triggers(now)
            return {
                "orderListId": list_id,
                "contingencyType": "OTO",
                "listStatusType": "EXEC_STARTED",
                "listOrderStatus": "EXECUTING",
                "listClientOrderId": list_client_id,
                "transactionTime": now,
                "symbol": w.symbol,
                "orders": [
                    {"symbol": x.symbol, "orderId": x.order_id, "clientOrderId": x.client_order_id}
                    for x in (w, p)
                ],
                "orderReports": reports,
            }

    def _run_triggers(self, now: int) -> None:
        """Place the pending legs whose working legs filled; one that the engine refuses now expires."""
        while self._triggered:
            working = self._orders[self._triggered.pop(0)]
            entry = self._pending.pop(working.list_partner, None) if working.list_partner else None
            if entry is None:
                continue
            p, spec, rules = entry
            p.update_time = now
            try:
                plan, asset, amount = self._engine_checks(spec, rules)
            except e.VenueError:
                p.status = "EXPIRED"
                self._emit_order(p, "EXPIRED")
                continue
            p.status, p.working_time, p.lock_asset, p.locked = "NEW", now, asset, amount
            self.ledger.lock(asset, amount)
            self._emit_order(p, "NEW")
            self._sweep(p, plan, now)
            self._settle(p, plan, now)

    def _sweep(self, o: Order, plan: list[book.Level], now: int) -> list[Trade]:
        """Fill `o` from the planned synthetic levels and the account's own crossing resting orders, best
        price first (own order first on a tie), applying STP whenever an own order is met."""
        makers = self._own_crossing(o, plan)
        trades: list[Trade] = []
        i = 0
        while o.remaining > 0 and o.status != "EXPIRED_IN_MATCH":
            level = plan[i] if i < len(plan) else None
            maker = makers[0] if makers else None
            if maker is not None and (
                level is None or (maker.price <= level[0] if o.is_buy else maker.price >= level[0])
            ):
                trade = self._self_match(o, maker, now)
                if trade is not None:
                    trades.append(trade)
                if not maker.is_open:
                    makers.pop(0)
                continue
            if level is None:
                break
            qty = min(level[1], o.remaining)
            if qty > 0:
                trades.append(self._fill(o, level[0], qty, maker=False, now=now))
            i += 1
        return trades

    def _own_crossing(self, o: Order, plan: list[book.Level]) -> list[Order]:
        """The account's resting orders on the other side that `o` would trade with, in match order.

        A MARKET or FOK order only meets own orders priced within its planned synthetic levels: its
        locked funds (MARKET) and its all-or-nothing check (FOK) were sized on that plan.
        """
        if o.type == "LIMIT_MAKER":
            return []
        bounded = o.type == "MARKET" or o.time_in_force == "FOK"
        if bounded and not plan:
            return []
        limit = plan[-1][0] if bounded else o.price
        found = [
            m
            for m in self._open[o.symbol].values()
            if m.is_buy != o.is_buy and (m.price <= limit if o.is_buy else m.price >= limit)
        ]
        found.sort(key=lambda m: (m.price if o.is_buy else -m.price, m.order_id))
        return found

    def _self_match(self, taker: Order, maker: Order, now: int) -> Trade | None:
        """One meeting of the taker with the account's own resting order; the taker's STP mode decides
        (TRANSFER is DECREMENT within one account, faqs/stp_faq.md). Returns the taker's trade for NONE."""
        mode = "DECREMENT" if taker.stp_mode == "TRANSFER" else taker.stp_mode
        if mode == "NONE":
            qty = min(taker.remaining, maker.remaining)
            self._fill(maker, maker.price, qty, maker=True, now=now)
            if not maker.is_open:
                del self._open[maker.symbol][maker.order_id]
                self._release(maker, maker.locked)
            else:
                self._release(maker, maker.locked - maker.lock_needed())
            return self._fill(taker, maker.price, qty, maker=False, now=now)
        match_id = self._next_prevented_id.get(taker.symbol, 0)
        self._next_prevented_id[taker.symbol] = match_id + 1
        if mode == "DECREMENT":
            qty = min(taker.remaining, maker.remaining)
            expire_taker, expire_maker = taker.remaining == qty, maker.remaining == qty
            self._prevent(maker, qty, match_id, expire_maker, now)
            self._prevent(taker, qty, match_id, expire_taker, now)
            return None
        if mode in ("EXPIRE_MAKER", "EXPIRE_BOTH"):
            self._prevent(maker, maker.remaining, match_id, True, now)
        if mode in ("EXPIRE_TAKER", "EXPIRE_BOTH"):
            self._prevent(taker, taker.remaining, match_id, True, now)
        return None

    def _prevent(self, o: Order, qty: Decimal, match_id: int, expire: bool, now: int) -> None:
        o.prevented_qty += qty
        o.prevented_match_id = match_id
        o.update_time = now
        if expire or o.remaining <= 0:
            o.status = "EXPIRED_IN_MATCH"
            self._open[o.symbol].pop(o.order_id, None)
            self._release(o, o.locked)
        elif o.order_id in self._open[o.symbol]:
            self._release(o, o.locked - o.lock_needed())
        self._emit_order(o, "TRADE_PREVENTION")

    def _ran_dry(self, o: Order, plan: list[book.Level]) -> bool:
        # A quoteOrderQty order expired when the whole book was not enough to spend its amount
        if not o.orig_quote_qty:
            return False
        return book.total_qty(plan) == book.total_qty(self._levels(o.symbol, o.is_buy))

    def _expire(self, o: Order, now: int) -> None:
        if o.type == "MARKET":
            o.expiry_reason = "INSUFFICIENT_LIQUIDITY"
        elif o.time_in_force == "FOK":
            o.expiry_reason = "UNFILLED_FOK_ORDER_EXPIRED"
        else:
            o.expiry_reason = "UNFILLED_IOC_QUANTITY_EXPIRED"
        o.status = "EXPIRED"
        o.update_time = now
        self._release(o, o.locked)
        self._emit_order(o, "EXPIRED")

    def _fill(self, o: Order, price: Decimal, qty: Decimal, *, maker: bool, now: int) -> Trade:
        """Move the funds of one fill (commission in the received asset) and record the trade."""
        quote = price * qty
        if o.is_buy:
            fee, fee_asset = (qty * COMMISSION_RATE).quantize(EIGHT, ROUND_HALF_UP), o.base_asset
            self.ledger.spend_locked(o.quote_asset, quote)
            o.locked -= quote
            self.ledger.credit(o.base_asset, qty, fee)
        else:
            fee, fee_asset = (quote * COMMISSION_RATE).quantize(EIGHT, ROUND_HALF_UP), o.quote_asset
            self.ledger.spend_locked(o.base_asset, qty)
            o.locked -= qty
            self.ledger.credit(o.quote_asset, quote, fee)
        o.executed_qty += qty
        o.cum_quote += quote
        if o.remaining > 0:
            o.status = "PARTIALLY_FILLED"
        else:  # nothing left: FILLED, or EXPIRED_IN_MATCH when STP took part of it (faqs/stp_faq.md)
            o.status = "FILLED" if not o.prevented_qty else "EXPIRED_IN_MATCH"
            if o.status == "FILLED" and o.list_partner in self._pending:
                self._triggered.append(o.order_id)  # its pending leg goes on the book after this match
        o.update_time = now
        t = Trade(
            self._next_trade_id, o.order_id, o.symbol, price, qty, quote, fee, fee_asset, now, o.is_buy, maker
        )
        self._next_trade_id += 1
        o.trades.append(t)
        self._trades[o.symbol].append(t)
        self._emit_order(o, "TRADE", t)
        if self._listeners:
            # The buyer is the maker when our resting buy is hit, or when our sell takes the book's bid
            agg = responses.agg_trade(o.symbol, self._agg_id(), price, qty, t.id, now, o.is_buy == maker)
            self._emit("trade", agg)
        return t

    # ----- cancels -------------------------------------------------------------------------------------

    def cancel(
        self,
        symbol: str,
        order_id: int | None = None,
        orig_client_order_id: str | None = None,
        new_client_order_id: str | None = None,
        cancel_restrictions: str | None = None,
    ) -> dict[str, Any]:
        """DELETE /api/v3/order; releases what the order still held locked.

        Raises:
            VenueError: -1121, -1102 (no id), -1145 (bad restriction), -2011 "Unknown order sent." for an
            unknown or closed order (or an id mismatch), -2011 on an unmet cancel restriction.
        """
        with self._lock:
            lookup_symbol(symbol, self.rules)
            if cancel_restrictions is not None and cancel_restrictions not in _RESTRICTIONS:
                raise e.err(e.BAD_CANCEL_RESTRICTIONS)
            o = self._find(symbol, order_id, orig_client_order_id, e.UNKNOWN_ORDER, e.UNKNOWN_ORDER)
            if not o.is_open and o.status != "PENDING_NEW":
                raise e.err(e.UNKNOWN_ORDER)
            if cancel_restrictions is not None and o.status != _RESTRICTIONS[cancel_restrictions]:
                raise e.err(e.CANCEL_RESTRICTED)
            return self._cancel(o, new_client_order_id)

    def cancel_open_orders(self, symbol: str) -> list[dict[str, Any]]:
        """DELETE /api/v3/openOrders.

        Raises:
            VenueError: -1121, or -2011 "Unknown order sent." when nothing is open (observed on Binance).
        """
        with self._lock:
            lookup_symbol(symbol, self.rules)
            targets = list(self._open[symbol].values())
            if not targets:
                raise e.err(e.UNKNOWN_ORDER)
            return [self._cancel(o, None) for o in targets]

    def _cancel(self, o: Order, new_client_order_id: str | None) -> dict[str, Any]:
        now = self._clock()
        cancel_id = new_client_order_id or self._new_client_id()
        o.status = "CANCELED"
        o.update_time = now
        self._open[o.symbol].pop(o.order_id, None)
        self._pending.pop(o.order_id, None)
        self._release(o, o.locked)
        self._update_time = now
        self._emit_order(o, "CANCELED", cancelClientOrderId=cancel_id)
        partner = self._orders.get(o.list_partner) if o.list_partner is not None else None
        if partner is not None and (partner.is_open or partner.status == "PENDING_NEW"):
            self._cancel(partner, None)  # cancelling one leg of an order list cancels the list
        return responses.canceled(o, cancel_id, now)

    # ----- prices --------------------------------------------------------------------------------------

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Move the reference price (a trade print there): a resting BUY at or above it, or SELL at or
        below it, fills at its own limit price, `level_qty` at most per move.

        Raises:
            VenueError: -1121 for an unknown symbol. ValueError: price not positive.
        """
        with self._lock:
            lookup_symbol(symbol, self.rules)
            if price <= 0:
                raise ValueError(f"price must be positive, was {price}")
            self._move(symbol, Decimal(price))

    def step_prices(self) -> None:
        """A seeded random walk: every symbol moves by -3..+3 ticks (never below one tick)."""
        with self._lock:
            for symbol, rules in self.rules.items():
                tick = rules.tick_size or EIGHT
                self._move(symbol, max(tick, self.prices[symbol] + tick * self._rng.randint(-3, 3)))

    def _move(self, symbol: str, price: Decimal) -> None:
        now = self._clock()
        previous, self.prices[symbol] = self.prices[symbol], price
        # The market's own print at the new price, so trade streams move with the book; the id is taken
        # even without listeners so trade ids do not depend on who listens
        print_id, self._next_trade_id = self._next_trade_id, self._next_trade_id + 1
        if self._listeners:
            qty, down = self.level_qty[symbol], price < previous
            self._emit("trade", responses.agg_trade(symbol, self._agg_id(), price, qty, print_id, now, down))
        resting = self._open[symbol]
        crossed = [o for o in resting.values() if (price <= o.price if o.is_buy else price >= o.price)]
        for o in crossed:
            self._fill(o, o.price, min(o.remaining, self.level_qty[symbol]), maker=True, now=now)
            if not o.is_open:
                del resting[o.order_id]
                self._release(o, o.locked)
            else:
                self._release(o, o.locked - o.lock_needed())
        if crossed:
            self._update_time = now
        self._run_triggers(now)
        self._book_update_id += 1
        if self._listeners:
            self._emit("book", responses.book_stream(self._book_update_id, self._ticker(symbol)))
