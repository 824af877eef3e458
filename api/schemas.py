"""Request bodies (pydantic, strict): Binance's own field names on the wire, engine types inside."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from api.errors import ApiError, field_errors
from engine.client_ids import DEFAULT_PREFIX, new_client_order_id
from engine.types import OrderRequest, OrderType, Side, TimeInForce, parse_decimal

SYMBOL = r"^[A-Z0-9]{2,20}$"
CLIENT_ORDER_ID = r"^[.A-Z:/a-z0-9_-]{1,36}$"
M = TypeVar("M", bound=BaseModel)
_MAX = Decimal("1e15")
_MAX_PLACES = 18
# Decimal() also takes "١", "１", "0.00_1", " 1 ", "1e3", "NaN": a string is plain ASCII digits only
# (\Z, not $, which would let a trailing newline through)
_PLAIN_DECIMAL = re.compile(r"\A[0-9]+(?:\.[0-9]+)?\Z")


def _positive(value: Any) -> Decimal:
    if isinstance(value, float):
        # never reached from JSON (floats are parsed as Decimal); refuse rather than guess
        raise ValueError("must be a decimal string or number")
    if isinstance(value, str) and not _PLAIN_DECIMAL.match(value):
        if value.strip().startswith("-"):
            raise ValueError("must be greater than zero")
        raise ValueError("must be a plain decimal string of ASCII digits, such as 12.345")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError("must be a finite decimal")
    try:
        dec = parse_decimal(value, "value")
    except ValueError as exc:
        # parse_decimal's message quotes the input; answer without echoing it
        negative = "negative" in str(exc)
        raise ValueError("must be greater than zero" if negative else "must be a finite decimal") from None
    if dec <= 0:
        raise ValueError("must be greater than zero")
    if dec > _MAX:
        raise ValueError(f"must not exceed {_MAX:f}")
    exponent = dec.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > _MAX_PLACES:
        raise ValueError(f"has more than {_MAX_PLACES} decimal places")
    return dec


PositiveDecimal = Annotated[Decimal, BeforeValidator(_positive)]
_NEEDS: dict[str, tuple[set[str], set[str]]] = {
    # type: (required fields, forbidden fields); MARKET's quantity/quoteOrderQty rule is checked apart
    "LIMIT": ({"quantity", "price", "timeInForce"}, {"quoteOrderQty", "stopPrice"}),
    "MARKET": (set(), {"price", "timeInForce", "stopPrice"}),
    "LIMIT_MAKER": ({"quantity", "price"}, {"timeInForce", "quoteOrderQty", "stopPrice"}),
    "STOP_LOSS": ({"quantity", "stopPrice"}, {"price", "timeInForce", "quoteOrderQty"}),
    "TAKE_PROFIT": ({"quantity", "stopPrice"}, {"price", "timeInForce", "quoteOrderQty"}),
    "STOP_LOSS_LIMIT": ({"quantity", "price", "stopPrice", "timeInForce"}, {"quoteOrderQty"}),
    "TAKE_PROFIT_LIMIT": ({"quantity", "price", "stopPrice", "timeInForce"}, {"quoteOrderQty"}),
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class OrderBody(_Body):
    symbol: Annotated[str, Field(pattern=SYMBOL)]
    side: Literal["BUY", "SELL"]
    type: Literal[
        "LIMIT", "MARKET", "LIMIT_MAKER", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"
    ]
    timeInForce: Literal["GTC", "IOC", "FOK"] | None = None
    quantity: PositiveDecimal | None = None
    quoteOrderQty: PositiveDecimal | None = None
    price: PositiveDecimal | None = None
    stopPrice: PositiveDecimal | None = None
    newClientOrderId: Annotated[str, Field(pattern=CLIENT_ORDER_ID)] | None = None

    @model_validator(mode="after")
    def _fields_fit_type(self) -> OrderBody:
        required, forbidden = _NEEDS[self.type]
        given = {
            k
            for k in ("quantity", "quoteOrderQty", "price", "stopPrice", "timeInForce")
            if getattr(self, k) is not None
        }
        missing = sorted(required - given)
        if missing:
            raise ValueError(f"{self.type} orders need {', '.join(missing)}")
        extra = sorted(forbidden & given)
        if extra:
            raise ValueError(f"{self.type} orders do not take {', '.join(extra)}")
        if self.type == "MARKET" and (self.quantity is None) == (self.quoteOrderQty is None):
            raise ValueError("MARKET orders need exactly one of quantity or quoteOrderQty")
        return self

    def to_request(self, prefix: str = DEFAULT_PREFIX) -> OrderRequest:
        """The engine's request; without a newClientOrderId, one is generated with the engine's `prefix`
        (an id the operator gives must carry the prefix itself: the engine refuses it otherwise)."""
        return OrderRequest(
            symbol=self.symbol,
            side=Side(self.side),
            type=OrderType(self.type),
            client_order_id=self.newClientOrderId or new_client_order_id(prefix),
            quantity=self.quantity,
            price=self.price,
            time_in_force=TimeInForce(self.timeInForce) if self.timeInForce else None,
            quote_order_qty=self.quoteOrderQty,
            stop_price=self.stopPrice,
        )


class CancelBody(_Body):
    symbol: Annotated[str, Field(pattern=SYMBOL)]
    orderId: Annotated[int, Field(gt=0, lt=2**63)] | None = None
    origClientOrderId: Annotated[str, Field(pattern=CLIENT_ORDER_ID)] | None = None

    @model_validator(mode="after")
    def _one_id(self) -> CancelBody:
        if self.orderId is None and self.origClientOrderId is None:
            raise ValueError("give orderId or origClientOrderId")
        return self


APPROVAL_ID = r"^apr-[0-9a-f]{16}$"


class ArmBody(_Body):
    # Neither: the token file <data-dir>/approvals/token.txt, or the session's one approved request
    token: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    approval_id: Annotated[str, Field(pattern=APPROVAL_ID)] | None = None


class ApprovalRequestBody(_Body):
    action: Literal["arm"] = "arm"


class ApproveBody(_Body):
    token: Annotated[str, Field(min_length=1, max_length=4096)]


class RejectBody(_Body):
    reason: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x20-\x7e]+$")] = "rejected"


class HoldBody(_Body):
    reason: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x20-\x7e]+$")] = "operator"
    # The kill switch: also cancel every own open order, in flight ones included (engine.kill_switch)
    cancel_all: bool = False


class EmptyBody(_Body):
    pass


def parse_body(model: type[M], data: dict[str, Any]) -> M:
    """Raises ApiError 422 invalid_body with one entry per bad field (inputs are never echoed, and an
    unknown key is not either: it is the client's text, so the answer lists the allowed fields)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        known = [e for e in errors if e.get("type") != "extra_forbidden"]
        detail = field_errors(known)
        unknown = len(errors) - len(known)
        if unknown:
            allowed = ", ".join(model.model_fields) or "none"
            detail.append(
                {
                    "field": "(unknown)",
                    "error": f"{unknown} unknown field(s); the allowed fields are {allowed}",
                }
            )
        raise ApiError(422, "invalid_body", detail) from None
