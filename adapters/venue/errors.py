"""Binance's error answers as one exception, so the simulator can send them verbatim.

    VenueError(code, msg, http_status)   the `{"code": .., "msg": ..}` body and its HTTP status

Helpers below build the messages whose wording Binance documents (errors.md); keeping the text in
one place stops the engine and the HTTP layer from drifting apart.
"""

from __future__ import annotations

DECIMAL_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
CLIENT_ID_RANGE = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"


class VenueError(Exception):
    """A Binance-style rejection: `code` and `msg` form the JSON body, `http_status` the status line."""

    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status

    def to_json(self) -> dict[str, int | str]:
        return {"code": self.code, "msg": self.msg}


def mandatory(name: str) -> VenueError:
    return VenueError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def one_of(first: str, second: str) -> VenueError:
    return VenueError(-1102, f"Param '{first}' or '{second}' must be sent, but both were empty/null!")


def not_required(name: str) -> VenueError:
    return VenueError(-1106, f"Parameter '{name}' sent when not required.")


def illegal_chars(name: str, legal_range: str) -> VenueError:
    return VenueError(
        -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal_range}'."
    )


def too_much_precision(name: str) -> VenueError:
    return VenueError(-1111, f"Parameter '{name}' has too much precision.")


def filter_failure(filter_type: str) -> VenueError:
    return VenueError(-1013, f"Filter failure: {filter_type}")


def rejected(msg: str) -> VenueError:
    """-2010 NEW_ORDER_REJECTED with one of the matching engine's documented messages."""
    return VenueError(-2010, msg)


INVALID_SYMBOL = (-1121, "Invalid symbol.")
INVALID_SIDE = (-1117, "Invalid side.")
INVALID_TYPE = (-1116, "Invalid orderType.")
INVALID_TIF = (-1115, "Invalid timeInForce.")
INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
DUPLICATE_ORDER = "Duplicate order sent."
WOULD_TAKE = "Order would immediately match and take."
MARKET_CLOSED = "Market is closed."
UNKNOWN_ORDER = (-2011, "Unknown order sent.")
NO_SUCH_ORDER = (-2013, "Order does not exist.")
CLIENT_ID_MISMATCH = (-2039, "Client order ID is not correct for this order ID.")
CANCEL_RESTRICTED = (-2011, "Order was not canceled due to cancel restrictions.")
BAD_CANCEL_RESTRICTIONS = (-1145, "cancelRestrictions has to be either ONLY_NEW or ONLY_PARTIALLY_FILLED.")
STP_NOT_ALLOWED = (-1013, "This symbol does not allow the specified self-trade prevention mode.")

# Binance names each unsupported type in its own -2010 message
UNSUPPORTED_TYPE_MSG = {
    "MARKET": "Market orders are not supported for this symbol.",
    "STOP_LOSS": "Stop loss orders are not supported for this symbol.",
    "STOP_LOSS_LIMIT": "Stop loss limit orders are not supported for this symbol.",
    "TAKE_PROFIT": "Take profit orders are not supported for this symbol.",
    "TAKE_PROFIT_LIMIT": "Take profit limit orders are not supported for this symbol.",
}


def err(pair: tuple[int, str]) -> VenueError:
    return VenueError(pair[0], pair[1])
