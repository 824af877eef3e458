"""Binance Spot wire shapes → engine types. Binance field names stop here (and in the venue that speaks them)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine.types import (
    AccountInfo,
    Balance,
    Fill,
    OrderType,
    Side,
    SymbolRules,
    TimeInForce,
    VenueOrder,
    VenueStatus,
)


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


def venue_status(value: Any) -> VenueStatus:
    """A Binance order status (enums.md "Order status"); UNRECOGNISED for any value the engine does not
    model (never an exception). The caller keeps the venue's text: VenueOrder.raw["status"]."""
    if value == VenueStatus.UNRECOGNISED.value:  # not a Binance value: a venue sending it is unrecognised too
        return VenueStatus.UNRECOGNISED
    try:
        return VenueStatus(value)
    except (ValueError, TypeError):
        return VenueStatus.UNRECOGNISED


def venue_order_from_json(data: dict[str, Any]) -> VenueOrder:
    """An order object from POST/GET/DELETE /api/v3/order (ACK, RESULT or FULL shape).

    Every status of enums.md maps to its own member (EXPIRED_IN_MATCH stays distinct from EXPIRED, and
    PENDING_NEW is a pending order-list leg); an unknown one maps to VenueStatus.UNRECOGNISED with the
    venue's text left in `raw["status"]`. `raw` is the venue's JSON as received, so STP's
    `preventedQuantity` (rest-api.md, order responses) and `preventedMatches` travel in it.
    """
    # A cancel answer names the cancelled order in origClientOrderId; clientOrderId is the cancel's own id
    client_id = data.get("origClientOrderId") or data.get("clientOrderId", "")
    status = venue_status(data["status"]) if "status" in data else VenueStatus.NEW
    fills = tuple(
        Fill(
            trade_id=int(f["tradeId"]),
            price=_dec(f["price"]),
            qty=_dec(f["qty"]),
            commission=_dec(f.get("commission")),
            commission_asset=f.get("commissionAsset") or "",
        )
        for f in data.get("fills", ())
    )
    return VenueOrder(
        symbol=data["symbol"],
        client_order_id=client_id,
        status=status,
        order_id=int(data["orderId"]) if data.get("orderId") is not None else None,
        orig_qty=_dec(data.get("origQty")),
        executed_qty=_dec(data.get("executedQty")),
        cumulative_quote_qty=_dec(data.get("cummulativeQuoteQty")),
        fills=fills,
        raw=data,
        status_text=str(data.get("status"))[:40],
        order_list_id=order_list_id_of(data.get("orderListId")),
        prevented_qty=_dec(data["preventedQuantity"]) if data.get("preventedQuantity") is not None else None,
        side=_enum(Side, data.get("side")),
        type=_enum(OrderType, data.get("type")),
        price=_dec(data.get("price")) if data.get("price") not in (None, "") else None,
        time_in_force=_enum(TimeInForce, data.get("timeInForce")),
    )


def order_list_id_of(value: Any) -> int:
    """orderListId: -1 for an order outside any list (rest-api.md), as does a value we cannot read."""
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _enum(kind: Any, value: Any) -> Any:
    """The engine's enum member, or None for a value it does not model (e.g. an order list type)."""
    try:
        return kind(value) if value is not None else None
    except ValueError:
        return None


def fill_from_trade(trade: dict[str, Any]) -> Fill:
    """One entry of GET /api/v3/myTrades (rest-api.md "Account trade list") as the engine's Fill: the
    same fields an executionReport TRADE carries (t, L, l, n, N, m)."""
    maker = trade.get("isMaker")
    return Fill(
        trade_id=int(trade["id"]),
        price=_dec(trade.get("price")),
        qty=_dec(trade.get("qty")),
        commission=_dec(trade.get("commission")),
        commission_asset=trade.get("commissionAsset") or "",
        is_maker=maker if isinstance(maker, bool) else None,
    )


def account_from_json(data: dict[str, Any]) -> AccountInfo:
    balances = tuple(
        Balance(asset=b["asset"], free=_dec(b["free"]), locked=_dec(b["locked"]))
        for b in data.get("balances", ())
    )
    return AccountInfo(
        can_trade=bool(data.get("canTrade")),
        balances=balances,
        permissions=tuple(data.get("permissions", ())),
        raw=data,
        update_time_ms=int(data["updateTime"]) if isinstance(data.get("updateTime"), int) else -1,
    )


def symbol_rules_from_json(sym: dict[str, Any]) -> SymbolRules:
    """One entry of exchangeInfo `symbols[]`."""
    filters = {f["filterType"]: f for f in sym.get("filters", ())}
    price = filters.get("PRICE_FILTER", {})
    lot = filters.get("LOT_SIZE", {})
    mlot = filters.get("MARKET_LOT_SIZE", {})
    notional = filters.get("NOTIONAL")
    legacy = filters.get("MIN_NOTIONAL")
    if notional is not None:
        min_notional, max_notional = _dec(notional.get("minNotional")), _dec(notional.get("maxNotional"))
        apply_min, apply_max = bool(notional.get("applyMinToMarket")), bool(notional.get("applyMaxToMarket"))
    elif legacy is not None:
        min_notional, max_notional = _dec(legacy.get("minNotional")), Decimal(0)
        apply_min, apply_max = bool(legacy.get("applyToMarket")), False
    else:
        min_notional, max_notional, apply_min, apply_max = Decimal(0), Decimal(0), False, False
    return SymbolRules(
        symbol=sym["symbol"],
        base_asset=sym["baseAsset"],
        quote_asset=sym["quoteAsset"],
        status=sym.get("status", "TRADING"),
        min_price=_dec(price.get("minPrice")),
        max_price=_dec(price.get("maxPrice")),
        tick_size=_dec(price.get("tickSize")),
        min_qty=_dec(lot.get("minQty")),
        max_qty=_dec(lot.get("maxQty")),
        step_size=_dec(lot.get("stepSize")),
        market_min_qty=_dec(mlot.get("minQty")),
        market_max_qty=_dec(mlot.get("maxQty")),
        market_step_size=_dec(mlot.get("stepSize")),
        min_notional=min_notional,
        max_notional=max_notional,
        apply_min_to_market=apply_min,
        apply_max_to_market=apply_max,
        order_types=tuple(sym.get("orderTypes", ())),
        base_precision=int(sym.get("baseAssetPrecision", 8)),
        quote_precision=int(sym.get("quoteAssetPrecision", 8)),
    )
