"""Binance's JSON shapes for orders, trades and book tickers. Decimals print with 8 places, ids and times
are integers, and the field is spelled `cummulativeQuoteQty` (rest-api.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapters.venue.orders import Order, Trade
from adapters.venue.symbols import fmt


def ack(o: Order, transact_time: int) -> dict[str, Any]:
    return {
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": o.order_list_id,
        "clientOrderId": o.client_order_id,
        "transactTime": transact_time,
    }


def result(o: Order, transact_time: int) -> dict[str, Any]:
    out = ack(o, transact_time)
    out.update(
        price=fmt(o.price),
        origQty=fmt(o.orig_qty),
        executedQty=fmt(o.executed_qty),
        origQuoteOrderQty=fmt(o.orig_quote_qty),
        cummulativeQuoteQty=fmt(o.cum_quote),
        status=o.status,
        timeInForce=o.time_in_force,
        type=o.type,
        side=o.side,
        workingTime=o.working_time,
        selfTradePreventionMode=o.stp_mode,
    )
    if o.stop_price:
        out["stopPrice"] = fmt(o.stop_price)
    if o.expiry_reason is not None:
        out["expiryReason"] = o.expiry_reason
    return _prevented(o, out)


def full(o: Order, transact_time: int, trades: list[Trade]) -> dict[str, Any]:
    out = result(o, transact_time)
    out["fills"] = [fill(t) for t in trades]
    return out


def placed(o: Order, resp_type: str, transact_time: int, trades: list[Trade]) -> dict[str, Any]:
    if resp_type == "ACK":
        return ack(o, transact_time)
    if resp_type == "RESULT":
        return result(o, transact_time)
    return full(o, transact_time, trades)


def _prevented(o: Order, out: dict[str, Any]) -> dict[str, Any]:
    # rest-api.md order response fields: "Appears only if the order expired due to STP"
    if o.prevented_match_id is not None:
        out["preventedMatchId"] = o.prevented_match_id
        out["preventedQuantity"] = fmt(o.prevented_qty)
    return out


def fill(t: Trade) -> dict[str, Any]:
    return {
        "price": fmt(t.price),
        "qty": fmt(t.qty),
        "commission": fmt(t.commission),
        "commissionAsset": t.commission_asset,
        "tradeId": t.id,
    }


def order(o: Order) -> dict[str, Any]:
    """GET /api/v3/order and openOrders shape."""
    out: dict[str, Any] = {
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": o.order_list_id,
        "clientOrderId": o.client_order_id,
        "price": fmt(o.price),
        "origQty": fmt(o.orig_qty),
        "executedQty": fmt(o.executed_qty),
        "cummulativeQuoteQty": fmt(o.cum_quote),
        "status": o.status,
        "timeInForce": o.time_in_force,
        "type": o.type,
        "side": o.side,
        "stopPrice": fmt(o.stop_price),
        "icebergQty": fmt(Decimal(0)),
        "time": o.time,
        "updateTime": o.update_time,
        "isWorking": o.working_time >= 0,
        "workingTime": o.working_time,
        "origQuoteOrderQty": fmt(o.orig_quote_qty),
        "selfTradePreventionMode": o.stp_mode,
    }
    if o.expiry_reason is not None:
        out["expiryReason"] = o.expiry_reason
    return _prevented(o, out)


def canceled(o: Order, cancel_client_id: str, transact_time: int) -> dict[str, Any]:
    """DELETE /api/v3/order: clientOrderId is the cancel's own id, origClientOrderId the order's."""
    out: dict[str, Any] = {
        "symbol": o.symbol,
        "origClientOrderId": o.client_order_id,
        "orderId": o.order_id,
        "orderListId": o.order_list_id,
        "clientOrderId": cancel_client_id,
        "transactTime": transact_time,
        "price": fmt(o.price),
        "origQty": fmt(o.orig_qty),
        "executedQty": fmt(o.executed_qty),
        "origQuoteOrderQty": fmt(o.orig_quote_qty),
        "cummulativeQuoteQty": fmt(o.cum_quote),
        "status": o.status,
        "timeInForce": o.time_in_force,
        "type": o.type,
        "side": o.side,
        "selfTradePreventionMode": o.stp_mode,
    }
    return _prevented(o, out)


def my_trade(t: Trade) -> dict[str, Any]:
    return {
        "symbol": t.symbol,
        "id": t.id,
        "orderId": t.order_id,
        "orderListId": -1,
        "price": fmt(t.price),
        "qty": fmt(t.qty),
        "quoteQty": fmt(t.quote_qty),
        "commission": fmt(t.commission),
        "commissionAsset": t.commission_asset,
        "time": t.time,
        "isBuyer": t.is_buyer,
        "isMaker": t.is_maker,
        "isBestMatch": True,
    }


def agg_trade(
    symbol: str, agg_id: int, price: Decimal, qty: Decimal, trade_id: int, time: int, buyer_maker: bool
) -> dict[str, Any]:
    """`<symbol>@aggTrade` stream payload."""
    return {
        "e": "aggTrade",
        "E": time,
        "s": symbol,
        "a": agg_id,
        "p": fmt(price),
        "q": fmt(qty),
        "f": trade_id,
        "l": trade_id,
        "T": time,
        "m": buyer_maker,
        "M": True,
    }


def book_ticker(symbol: str, bid: tuple[Decimal, Decimal], ask: tuple[Decimal, Decimal]) -> dict[str, Any]:
    """GET /api/v3/ticker/bookTicker shape."""
    return {
        "symbol": symbol,
        "bidPrice": fmt(bid[0]),
        "bidQty": fmt(bid[1]),
        "askPrice": fmt(ask[0]),
        "askQty": fmt(ask[1]),
    }


def book_stream(update_id: int, ticker: dict[str, Any]) -> dict[str, Any]:
    """`<symbol>@bookTicker` stream payload (no e/E fields on Binance)."""
    return {
        "u": update_id,
        "s": ticker["symbol"],
        "b": ticker["bidPrice"],
        "B": ticker["bidQty"],
        "a": ticker["askPrice"],
        "A": ticker["askQty"],
    }
