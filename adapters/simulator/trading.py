"""SIGNED endpoints: account, orders, open orders, trades, order rate limits.

Each handler gets parameters that already passed the key/timestamp/signature checks and hands them to the
matching engine unchanged apart from the auth parameters, so the engine alone decides what is a valid order.
"""

from __future__ import annotations

from typing import Any

from adapters.simulator.auth import AUTH_PARAMS, check_timestamp, mandatory
from adapters.simulator.state import SimulatorState
from adapters.venue.errors import VenueError

TIMEOUT_MSG = (
    "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
)
_NO_SUCH_ORDER = (-2013, "Order does not exist.")


def _order_params(p: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in p.items() if k not in AUTH_PARAMS}


def _symbol(p: dict[str, str]) -> str:
    symbol = p.get("symbol")
    if not symbol:
        raise mandatory("symbol")
    return symbol


def _ids(p: dict[str, str]) -> tuple[int | None, str | None]:
    raw_id = p.get("orderId") or None
    client_id = p.get("origClientOrderId") or None
    if raw_id is None and client_id is None:
        raise VenueError(
            -1102, "Param 'orderId' or 'origClientOrderId' must be sent, but both were empty/null!"
        )
    if raw_id is not None and not raw_id.isdigit():
        raise mandatory("orderId")
    return (int(raw_id) if raw_id is not None else None), client_id


def account(state: SimulatorState, p: dict[str, str]) -> Any:
    return state.engine.account(omit_zero_balances=p.get("omitZeroBalances", "false").lower() == "true")


def test_order(state: SimulatorState, p: dict[str, str]) -> Any:
    """POST /api/v3/order/test: validate like a real order, never reach the book."""
    state.engine.validate(_order_params({k: v for k, v in p.items() if k != "computeCommissionRates"}))
    state.test_orders += 1
    if p.get("computeCommissionRates", "false").lower() == "true":
        rates = state.engine.account().get("commissionRates", {})
        maker, taker = rates.get("maker", "0.00000000"), rates.get("taker", "0.00000000")
        zero = "0.00000000"
        return {
            "standardCommissionForOrder": {"maker": maker, "taker": taker},
            "specialCommissionForOrder": {"maker": zero, "taker": zero},
            "taxCommissionForOrder": {"maker": zero, "taker": zero},
            "discount": {"enabledForAccount": False, "enabledForSymbol": False, "discountAsset": "BNB",
                         "discount": zero},
        }  # fmt: skip
    return {}


def new_order(state: SimulatorState, p: dict[str, str]) -> Any:
    """POST /api/v3/order, with the lost-response and not-found-lag faults applied after execution."""
    state.limiter.admit_order(state.now_ms())
    # Binance re-checks recvWindow just before the matching engine (since 2025-06-06)
    check_timestamp(p, state.now_ms())
    # counted before placing so a fill inside place() can take it off again (the engine reports it then)
    state.limiter.count_order(state.now_ms())
    try:
        result = state.engine.place(_order_params(p))
    except VenueError:
        state.limiter.count_order(state.now_ms(), -1)  # only accepted orders count
        raise
    state.real_orders += 1
    state.hide_if_lagging(result)
    if state.faults.take("lost_response"):
        state.lost_responses += 1
        raise VenueError(-1007, TIMEOUT_MSG, http_status=state.faults.lost_response_status)
    return result


def query_order(state: SimulatorState, p: dict[str, str]) -> Any:
    symbol = _symbol(p)
    order_id, client_id = _ids(p)
    if state.is_hidden(symbol, order_id, client_id):
        raise VenueError(*_NO_SUCH_ORDER)
    return state.engine.query(symbol, order_id=order_id, orig_client_order_id=client_id)


def cancel_order(state: SimulatorState, p: dict[str, str]) -> Any:
    symbol = _symbol(p)
    order_id, client_id = _ids(p)
    return state.engine.cancel(
        symbol,
        order_id=order_id,
        orig_client_order_id=client_id,
        new_client_order_id=p.get("newClientOrderId") or None,
        cancel_restrictions=p.get("cancelRestrictions") or None,
    )


def open_orders(state: SimulatorState, p: dict[str, str]) -> Any:
    symbol = p.get("symbol") or None
    if symbol is not None and symbol not in state.engine.rules:
        raise VenueError(-1121, "Invalid symbol.")
    orders = state.engine.open_orders(symbol)
    return [o for o in orders if not state.is_hidden(o["symbol"], int(o["orderId"]), None)]


def open_orders_weight(p: dict[str, str]) -> int:
    return 6 if p.get("symbol") else 80


def cancel_open_orders(state: SimulatorState, p: dict[str, str]) -> Any:
    return state.engine.cancel_open_orders(_symbol(p))


# rest-api.md "Account trade list": the supported combinations of optional parameters (with `symbol`)
_TRADE_COMBOS = frozenset(
    frozenset(c)
    for c in ((), ("orderId",), ("startTime",), ("endTime",), ("fromId",), ("startTime", "endTime"),
              ("orderId", "fromId"))
)  # fmt: skip
_DAY_MS = 24 * 3600 * 1000


def my_trades(state: SimulatorState, p: dict[str, str]) -> Any:
    """GET /api/v3/myTrades as strictly as rest-api.md states it: symbol mandatory, only the documented
    combinations of orderId / startTime / endTime / fromId (else -1128), at most 24 h between startTime
    and endTime (-1127), limit 1..1000 (default 500; outside it -1130)."""
    symbol = _symbol(p)

    def opt_int(name: str) -> int | None:
        raw = p.get(name)
        if raw is None or raw == "":
            return None
        if not raw.isdigit():
            raise mandatory(name)
        return int(raw)

    given = frozenset(k for k in ("orderId", "startTime", "endTime", "fromId") if p.get(k) not in (None, ""))
    if given not in _TRADE_COMBOS:
        raise VenueError(-1128, "Combination of optional parameters invalid.")
    order_id, from_id = opt_int("orderId"), opt_int("fromId")
    start, end = opt_int("startTime"), opt_int("endTime")
    limit = opt_int("limit")
    if limit is not None and not 1 <= limit <= 1000:
        raise VenueError(-1130, "Data sent for parameter 'limit' is not valid.")
    if start is not None and end is not None and end - start > _DAY_MS:
        raise VenueError(-1127, "More than 24 hours between startTime and endTime.")
    lag_ms = int(state.faults.trades_lag_s * 1000)
    return state.engine.my_trades(
        symbol, order_id=order_id, from_id=from_id, limit=limit or 500, start_time=start, end_time=end,
        visible_until=state.now_ms() - lag_ms if lag_ms else None,
    )  # fmt: skip


def my_trades_weight(p: dict[str, str]) -> int:
    return 5 if p.get("orderId") else 20


def order_rate_limit(state: SimulatorState, p: dict[str, str]) -> Any:
    return state.limiter.order_rate_limits(state.now_ms())
