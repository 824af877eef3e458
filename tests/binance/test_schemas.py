"""Binance order JSON → VenueOrder: every status of enums.md, and unknown ones without an exception."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from adapters.binance.schemas import venue_order_from_json, venue_status
from engine.types import VenueStatus

# enums.md, "Order status (status)"
ENUMS_MD_STATUSES = [
    "NEW",
    "PENDING_NEW",
    "PARTIALLY_FILLED",
    "FILLED",
    "CANCELED",
    "PENDING_CANCEL",
    "REJECTED",
    "EXPIRED",
    "EXPIRED_IN_MATCH",
]


def _order(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "symbol": "BTCUSDT",
        "orderId": 7,
        "orderListId": -1,
        "clientOrderId": "c1",
        "price": "100.00000000",
        "origQty": "1.00000000",
        "executedQty": "0.00000000",
        "cummulativeQuoteQty": "0.00000000",
        "status": "NEW",
        "timeInForce": "GTC",
        "type": "LIMIT",
        "side": "BUY",
    }
    data.update(over)
    return data


@pytest.mark.parametrize("status", ENUMS_MD_STATUSES)
def test_every_documented_status_parses_to_its_own_member(status: str) -> None:
    vo = venue_order_from_json(_order(status=status))
    assert vo.status is VenueStatus(status)
    assert vo.status.value == status


def test_expired_in_match_is_not_folded_into_expired() -> None:
    assert venue_order_from_json(_order(status="EXPIRED_IN_MATCH")).status is VenueStatus.EXPIRED_IN_MATCH


@pytest.mark.parametrize("status", ["SOMETHING_NEW", "", "new", 3, None])
def test_an_unknown_status_is_unrecognised_not_an_exception(status: object) -> None:
    vo = venue_order_from_json(_order(status=status))
    assert vo.status is VenueStatus.UNRECOGNISED
    assert vo.raw["status"] == status  # the venue's own text, for the journal


def test_the_unrecognised_spelling_itself_is_not_a_venue_value() -> None:
    assert venue_status("UNRECOGNISED") is VenueStatus.UNRECOGNISED
    assert venue_status("FILLED") is VenueStatus.FILLED


def test_prevented_quantity_of_an_stp_expiry_is_kept_in_raw() -> None:
    # rest-api.md: an order expired by STP carries preventedMatchId / preventedQuantity
    vo = venue_order_from_json(
        _order(status="EXPIRED_IN_MATCH", preventedMatchId=0, preventedQuantity="1.20000000")
    )
    assert vo.status is VenueStatus.EXPIRED_IN_MATCH
    assert Decimal(vo.raw["preventedQuantity"]) == Decimal("1.2")
    assert vo.raw["preventedMatchId"] == 0
    assert vo.prevented_qty == Decimal("1.2")  # what the engine reads, parsed here
    assert (vo.status_text, vo.order_list_id, vo.pushed) == ("EXPIRED_IN_MATCH", -1, False)


def test_a_pending_new_leg_keeps_its_order_list_id() -> None:
    vo = venue_order_from_json(_order(status="PENDING_NEW", orderListId=3))
    assert vo.status is VenueStatus.PENDING_NEW
    assert vo.raw["orderListId"] == 3
