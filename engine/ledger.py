"""Read models computed from the journal's order rows alone: fills, positions and P&L, order history.

`Ledger.on_order_row` is the one fold. The engine feeds it twice over: replay at start-up (engine.replay's
`on_order` hook, the same scan that verifies the journal) and then every durable group (the writer's
observers, after the commit, before anyone is answered). `project(rows)` runs that same fold over a
journal for an auditor: the numbers the API serves are the numbers a replay computes.

Memory stays bounded: positions are one row per traded pair; the last FILLS_KEPT fills and the
TERMINAL_KEPT most recent finished orders are kept (open orders always), documented in docs/api.md.
Every method here is synchronous, in memory, and never raises on a payload it cannot read: such a row is
named in `problems` and skipped.
"""

from __future__ import annotations

import bisect
import logging
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any

from engine import order as order_mod
from engine.journal import RawRow, Record
from engine.late_trades import TRADE_STREAM, UNTRACED_KEPT
from engine.order import Order
from engine.positions import Book, computed, plain
from engine.replay import ReplayResult, replay

log = logging.getLogger(__name__)
FILLS_KEPT = 100_000
TERMINAL_KEPT = 10_000
_PROBLEMS_KEPT = 100
_CTX = Context(prec=34)  # the same fixed precision as engine.positions


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs twice as much, per fill replayed
class FillRow:
    """One trade of one of our orders as the journal holds it; `time` is when it was journaled."""

    seq: int
    time: str
    symbol: str
    side: str
    client_order_id: str
    order_id: int | None
    trade_id: int | None  # None: untraced (see _untraced)
    price: Decimal
    qty: Decimal
    commission: Decimal | None
    commission_asset: str | None
    mode: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "symbol": self.symbol,
            "side": self.side,
            "clientOrderId": self.client_order_id,
            "orderId": self.order_id,
            "tradeId": self.trade_id,
            "price": plain(self.price),
            "qty": plain(self.qty),
            "quoteQty": computed(self.price * self.qty),
            "commission": plain(self.commission) if self.commission is not None else None,
            "commissionAsset": self.commission_asset,
            "mode": self.mode,
            "traced": self.trade_id is not None,
        }


@dataclass(slots=True)
class OrderRow:
    """An order as the journal tells it, with when it was created and last changed."""

    order: Order
    first_seq: int
    created_at: str
    updated_at: str
    last_seq: int
    base_asset: str = ""
    quote_asset: str = ""
    cum_quote: Decimal = Decimal(0)  # the venue's cumulative quote quantity as last journaled
    # Untraced fills counted in positions at their average price, oldest first: a late trade replaces them
    untraced_fills: list[FillRow] = field(default_factory=list)
    uncounted: Decimal = Decimal(0)  # untraced quantity with no price at all: in no position until traced

    def as_dict(self) -> dict[str, Any]:
        o, req = self.order, self.order.request
        return {
            "clientOrderId": o.client_order_id,
            "symbol": req.symbol,
            "side": req.side.value,
            "type": req.type.value,
            "qty": plain(req.quantity) if req.quantity is not None else None,
            "quoteOrderQty": plain(req.quote_order_qty) if req.quote_order_qty is not None else None,
            "price": plain(req.price) if req.price is not None else None,
            "state": o.state.value,
            "mode": o.mode,
            "filledQty": plain(o.filled_qty),
            "orderId": o.order_id,
            "open": not o.terminal,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
        }


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_after_seq: int | None


def _follow(mine: Order, applied: Order, payload: dict[str, Any]) -> None:
    """Make the ledger's copy what order.apply made of replay's order for the same row."""
    mine.state, mine.version = applied.state, applied.version
    mine.order_id, mine.filled_qty = applied.order_id, applied.filled_qty
    trade_ids = payload.get("tradeIds")
    if trade_ids:  # a set of its own: replay's (later the store's) keeps changing
        if mine.trade_ids is None:
            mine.trade_ids = set()
        mine.trade_ids.update(trade_ids)


def _fills_of(payload: dict[str, Any]) -> list[dict[str, Any]]:
    fills = payload.get("fills")
    return list(fills) if isinstance(fills, list | tuple) else []


class Ledger:
    def __init__(self, *, fills_kept: int = FILLS_KEPT, terminal_kept: int = TERMINAL_KEPT) -> None:
        self.last_seq = 0
        self.book = Book()
        self.fills_seen = 0  # every fill folded, kept or not
        self.problems: deque[str] = deque(maxlen=_PROBLEMS_KEPT)
        self._fills_kept = fills_kept
        self._fills: list[FillRow] = []  # in seq order; trimmed to the newest fills_kept
        self._terminal_kept = terminal_kept
        self.orders: dict[str, OrderRow] = {}
        self._terminal: deque[str] = deque()  # finished orders still kept, oldest first
        # Finished orders out of the history with untraced quantity: a late trade still replaces it (the
        # store journals those of its newest UNTRACED_KEPT untraced orders, engine.late_trades)
        self._untraced_rows: OrderedDict[str, OrderRow] = OrderedDict()
        self._index: list[tuple[int, str]] = []  # (first_seq, clientOrderId), ascending; may hold evicted
        # (symbol, orderId) -> clientOrderId of the finished orders kept: a cancel by the venue's id finds them
        self._finished_ids: dict[tuple[str, int], str] = {}

    # -- folding -------------------------------------------------------------------------------

    def observe(self, records: Iterable[Record]) -> None:
        """The writer's observer: every durable record, in journal order; ones already folded are skipped."""
        for rec in records:
            if rec.seq <= self.last_seq:
                continue
            self.last_seq = rec.seq
            if rec.stream == "order":
                self.on_order_row(
                    rec.seq,
                    rec.stream_id,
                    rec.trigger,
                    rec.to_state,
                    rec.version,
                    rec.payload,
                    rec.created_at,
                )
            elif rec.stream == TRADE_STREAM:
                self.on_trade_row(rec.seq, rec.payload, rec.created_at)

    def on_order_row(
        self, seq: int, cid: str, trigger: str, to_state: str | None, version: int, payload: dict[str, Any],
        created_at: str, applied: Order | None = None,
    ) -> None:  # fmt: skip
        """Fold one order-stream row (already verified as a legal transition). `applied`: the order as
        replay has just applied this row to it; its fields are copied instead of applying the row again
        (half the cost of the fold at start-up). The ledger never keeps a reference to it."""
        try:
            self._fold(seq, cid, trigger, to_state or "", version, payload, created_at, applied)
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            self.problems.append(f"seq {seq}: {exc!r:.200}")
            log.warning("ledger skipped seq %s: %r", seq, exc)

    def _fold(self, seq: int, cid: str, trigger: str, to_state: str, version: int, payload: dict[str, Any],
              created_at: str, applied: Order | None) -> None:  # fmt: skip
        row = self.orders.get(cid)
        if row is not None and applied is not None and "executedQty" not in payload:
            # Most rows (preflight, send, ack, cancel steps) carry no fill: state, times and assets only
            mine = row.order
            mine.state, mine.version, mine.order_id = applied.state, applied.version, applied.order_id
            row.updated_at, row.last_seq = created_at, seq
            base = payload.get("baseAsset")
            if base is not None:
                row.base_asset, row.quote_asset = str(base), str(payload.get("quoteAsset", ""))
            if mine.terminal:
                self._finished(cid)
            return
        if row is None:
            if trigger != "create":
                return  # an order evicted from the history cannot change any more: it was terminal
            if applied is None:
                order = order_mod.apply(None, trigger, to_state, version, payload)
            else:  # the request is immutable: shared, not parsed again
                order = Order(applied.request, applied.mode)
                order.state, order.version = applied.state, applied.version
            row = self.orders[cid] = OrderRow(order, seq, created_at, created_at, seq)
            self._index.append((seq, cid))
            return
        base = payload.get("baseAsset")
        if isinstance(base, str):
            row.base_asset, row.quote_asset = base, str(payload.get("quoteAsset", ""))
        seen = row.order.trade_ids or ()
        before = row.order.filled_qty
        new = [f for f in _fills_of(payload) if int(f["tradeId"]) not in seen]
        if applied is None:
            order_mod.apply(row.order, trigger, to_state, version, payload)
        else:
            _follow(row.order, applied, payload)
        row.updated_at, row.last_seq = created_at, seq
        if not new and row.order.filled_qty == before and "cumQuoteQty" not in payload:
            if row.order.terminal:
                self._finished(cid)
            return  # no fill in this row
        req = row.order.request
        fills = [
            FillRow(
                seq, created_at, req.symbol, req.side.value, cid, row.order.order_id, int(f["tradeId"]),
                Decimal(f["price"]), Decimal(f["qty"]), Decimal(f.get("commission") or 0),
                str(f.get("commissionAsset") or ""), row.order.mode,
            )
            for f in new
        ]  # fmt: skip
        delta = row.order.filled_qty - before
        untraced = self._untraced(row, seq, created_at, trigger, payload, delta, fills)
        # Trades beyond the growth of executedQty explain quantity counted before without them (a REST view
        # whose GET /myTrades lagged): they take its place, as a late trade row would, oldest first
        surplus = sum((f.qty for f in fills), Decimal(0)) - delta
        for fill in fills:
            explained = min(fill.qty, surplus) if surplus > 0 else Decimal(0)
            if explained:
                surplus -= explained
                self._explain(row, fill, explained)
            else:
                self._add_fill(row, fill)
        if untraced is not None:
            self._add_fill(row, untraced)
            row.untraced_fills.append(untraced)
        if row.order.terminal:
            self._finished(cid)

    def on_trade_row(self, seq: int, payload: dict[str, Any], created_at: str) -> None:
        """Fold one late trade (engine.late_trades, already verified against its order by replay)."""
        try:
            self._trace(seq, payload, created_at)
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            self.problems.append(f"seq {seq}: {exc!r:.200}")
            log.warning("ledger skipped seq %s: %r", seq, exc)

    def _trace(self, seq: int, payload: dict[str, Any], created_at: str) -> None:
        cid, f = str(payload["clientOrderId"]), payload["fill"]
        trade_id, price, qty = int(f["tradeId"]), Decimal(f["price"]), Decimal(f["qty"])
        row = self.orders.get(cid) or self._untraced_rows.get(cid)
        if row is None:
            self.problems.append(
                f"seq {seq}: trade {trade_id} of {cid}, no longer in the history: not counted"
            )
            return
        o = row.order
        if o.trade_ids is None:
            o.trade_ids = set()
        o.trade_ids.add(trade_id)
        traced = FillRow(seq, created_at, o.symbol, o.request.side.value, cid, o.order_id, trade_id, price, qty,
                         Decimal(f.get("commission") or 0), str(f.get("commissionAsset") or ""), o.mode)  # fmt: skip
        self._explain(row, traced, qty)
        if not (row.untraced_fills or row.uncounted):
            self._untraced_rows.pop(cid, None)

    def _explain(self, row: OrderRow, traced: FillRow, explained: Decimal) -> None:
        """`explained` of trade `traced` takes the place of untraced quantity: of the fills counted at
        their average price (quantity and cost are in positions already; the untraced fill shrinks or
        leaves the list), then of quantity never counted (counted now at the trade's price). The rest of
        the trade, if any, is a fill of its own; the trade adds its commission."""
        left, closed = explained, 0
        while left > 0 and row.untraced_fills:
            u = row.untraced_fills[0]
            used = min(u.qty, left)
            left -= used
            if used == u.qty:
                row.untraced_fills.pop(0)
                self._drop_listed(u)
                closed += 1
            else:  # the rest keeps its share of the quote quantity
                u.price, u.qty = (
                    _CTX.divide(u.price * u.qty - traced.price * used, u.qty - used),
                    u.qty - used,
                )
        uncounted = min(left, row.uncounted)
        row.uncounted -= uncounted
        o = row.order
        asset, cost_asset = (row.base_asset, row.quote_asset) if row.base_asset else (o.symbol, "")
        self.book.retrace(asset, cost_asset, o.request.side, traced.price, uncounted + traced.qty - explained,
                          traced.commission or Decimal(0), traced.commission_asset or "", closed)  # fmt: skip
        self._list(traced)

    def _drop_listed(self, fill: FillRow) -> None:
        """Take an untraced fill off the fills list (it may have been trimmed off already)."""
        fills = self._fills
        i = bisect.bisect_left(fills, fill.seq, key=lambda r: r.seq)
        while i < len(fills) and fills[i].seq == fill.seq:
            if fills[i] is fill:
                del fills[i]
                return
            i += 1

    def _untraced(
        self, row: OrderRow, seq: int, created_at: str, trigger: str, payload: dict[str, Any], delta: Decimal,
        fills: list[FillRow],
    ) -> FillRow | None:  # fmt: skip
        """Quantity the order's executedQty grew by beyond its journaled trades: a fill learned by polling
        (Binance's order query carries no trades) or a stream report that never arrived. Counted at its
        average price from cumQuoteQty, with no trade id and no commission (unknown: not in the answer)."""
        quote = payload.get("cumQuoteQty")
        previous_quote, row.cum_quote = row.cum_quote, Decimal(quote) if quote is not None else row.cum_quote
        missing = delta
        for f in fills:
            missing -= f.qty
        if missing <= 0:
            return None
        traced_quote = sum((f.price * f.qty for f in fills), Decimal(0))
        if quote is None:
            # An adopted order's fills before the journal knew it: no price to count them at
            row.uncounted += missing
            self.problems.append(f"seq {seq}: {trigger} of {row.order.client_order_id} moved executedQty by "
                                 f"{missing} without trades or cumQuoteQty; not in positions")  # fmt: skip
            return None
        price = _CTX.divide(Decimal(quote) - previous_quote - traced_quote, missing)
        o = row.order
        return FillRow(seq, created_at, o.symbol, o.request.side.value, o.client_order_id, o.order_id, None,
                       price, missing, None, None, o.mode)  # fmt: skip

    def _add_fill(self, row: OrderRow, fill: FillRow) -> None:
        req = row.order.request
        if row.base_asset:
            asset, cost_asset = row.base_asset, row.quote_asset
        else:  # a journal from before the send row named the assets: the pair itself, no quote known
            asset, cost_asset = req.symbol, ""
        self.book.trade(asset, cost_asset, req.side, fill.price, fill.qty, fill.commission or Decimal(0),
                        fill.commission_asset or "", traced=fill.trade_id is not None)  # fmt: skip
        self._list(fill)

    def _list(self, fill: FillRow) -> None:
        self.fills_seen += 1
        self._fills.append(fill)
        if len(self._fills) > 2 * self._fills_kept:  # trimmed in bulk: amortised O(1) per fill
            del self._fills[: len(self._fills) - self._fills_kept]

    def _finished(self, cid: str) -> None:
        self._terminal.append(cid)
        done = self.orders[cid].order
        if done.order_id is not None:
            self._finished_ids[(done.symbol, done.order_id)] = cid
        while len(self._terminal) > self._terminal_kept:
            row = self.orders.pop(self._terminal.popleft(), None)
            if row is not None and row.order.order_id is not None:
                key = (row.order.symbol, row.order.order_id)
                if self._finished_ids.get(key) == row.order.client_order_id:
                    del self._finished_ids[key]
            if row is not None and (row.untraced_fills or row.uncounted):
                self._untraced_rows[row.order.client_order_id] = row
                if len(self._untraced_rows) > UNTRACED_KEPT:
                    self._untraced_rows.popitem(last=False)
        if len(self._index) > 2 * len(self.orders) + 1024:
            self._index = [e for e in self._index if e[1] in self.orders]

    # -- reading (memory only, no I/O) ------------------------------------------------------------

    def order(self, client_order_id: str) -> Order | None:
        """The order as the history holds it: open, or finished and among the TERMINAL_KEPT newest."""
        row = self.orders.get(client_order_id)
        return row.order if row is not None else None

    def finished_order_id(self, symbol: str, order_id: int) -> str | None:
        """The client order id of the finished order the venue numbered `order_id` on `symbol`, while the
        history holds it (the TERMINAL_KEPT newest finished orders), else None."""
        return self._finished_ids.get((symbol, order_id))

    def positions(self) -> dict[str, Any]:
        return {
            "as_of_seq": self.last_seq,
            "positions": self.book.as_list(),
            "fees_total": {a: computed(v) for a, v in sorted(self.book.fees_total().items())},
            "problems": list(self.problems),  # rows the fold could not count (the newest 100)
        }

    def fills(
        self, *, symbol: str | None = None, client_order_id: str | None = None, since: str | None = None,
        until: str | None = None, after_seq: int = 0, limit: int = 100,
    ) -> Page:  # fmt: skip
        """Fills after `after_seq`, oldest first. A page ends at a journal row's end, so it may exceed
        `limit` by the other fills of its last row; next_after_seq is None when nothing more matches."""
        fills = self._fills
        start = bisect.bisect_right(fills, after_seq, key=lambda f: f.seq)
        out: list[FillRow] = []
        for fill in fills[start:]:
            if len(out) >= limit and fill.seq != out[-1].seq:
                return Page([f.as_dict() for f in out], out[-1].seq)
            if symbol is not None and fill.symbol != symbol:
                continue
            if client_order_id is not None and fill.client_order_id != client_order_id:
                continue
            if (since is not None and fill.time < since) or (until is not None and fill.time >= until):
                continue
            out.append(fill)
        return Page([f.as_dict() for f in out], None)

    @property
    def oldest_fill_seq(self) -> int | None:
        return self._fills[0].seq if self._fills else None

    def list_orders(
        self, *, states: frozenset[str] | None = None, symbol: str | None = None, since: str | None = None,
        until: str | None = None, open_only: bool | None = None, after_seq: int = 0, limit: int = 100,
    ) -> Page:  # fmt: skip
        """Orders created after `after_seq` (their create row's seq), oldest first."""
        index = self._index
        start = bisect.bisect_right(index, after_seq, key=lambda e: e[0])
        out: list[OrderRow] = []
        for first_seq, cid in index[start:]:
            row = self.orders.get(cid)
            if row is None or row.first_seq != first_seq:
                continue  # evicted from the history
            o = row.order
            if states is not None and o.state.value not in states:
                continue
            if symbol is not None and o.symbol != symbol:
                continue
            if open_only is not None and open_only == o.terminal:
                continue
            if (since is not None and row.created_at < since) or (
                until is not None and row.created_at >= until
            ):
                continue
            if len(out) == limit:
                return Page([r.as_dict() for r in out], out[-1].first_seq)
            out.append(row)
        return Page([r.as_dict() for r in out], None)


def project(
    rows: Iterable[RawRow], *, fills_kept: int = FILLS_KEPT, **replay_options: Any
) -> tuple[Ledger, ReplayResult]:
    """The ledger of a journal by replay (verifying it on the way): the auditor's recomputation.
    `fills_kept`: how many of the newest fills to keep listed (positions always count every fill).

    Raises:
        JournalCorrupt: as engine.replay.replay.
    """
    ledger = Ledger(fills_kept=fills_kept)
    result = replay(rows, on_order=ledger.on_order_row, on_trade=ledger.on_trade_row, **replay_options)
    ledger.last_seq = result.last_seq
    return ledger, result
