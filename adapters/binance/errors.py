"""Binance answers and transport failures → engine errors, each with an internal `reason` code.

The class says what the caller does next; the reason says why (errors.md, rest-api.md "LIMITS"):

    engine.errors.ExchangeError
    ├── ExchangeRejected        final: the venue said no; do not retry as is
    │     INVALID_SYMBOL (-1121) · FILTER_FAILURE (-1013) · INSUFFICIENT_BALANCE (-2010 "insufficient balance")
    │     DUPLICATE_ORDER (-2010 "Duplicate order sent.") · ORDER_WOULD_TAKE (-2010 "would immediately match")
    │     MARKET_CLOSED ("Market is closed.") · TIMESTAMP_OUT_OF_WINDOW (-1021, after one resync-and-retry)
    │     INVALID_SIGNATURE (-1022) · PERMISSION_DENIED (-2015, -2014, -1002, HTTP 401)
    │     ACCOUNT_TRADING_DISABLED ("This account may not place or cancel orders.", "This action is
    │         disabled on this account.": errors.md, messages for -2010/-2011; only support lifts it)
    │     ORDER_ARCHIVED (-2026: canceled or expired with no executed qty over 90 days ago, errors.md; the
    │         order is over and never traded, so reconciliation may close it as terminal without fills)
    │     UNKNOWN_ORDER (-2011, -2013) · INVALID_PARAMETER (other -11xx) · ORDER_REJECTED (other -20xx)
    │     UNKNOWN_ERROR (any other 4xx answer)
    ├── ExchangeUnavailable     retryable: the request was NOT executed
    │     RATE_LIMIT (429, -1003, -1015; also refused locally during Retry-After) · IP_BANNED (418)
    │     WAF_LIMIT (HTTP 403: "a WAF rule has been violated ... a rate limit violation or a security
    │         block", rest-api.md "HTTP Return Codes"; the governor backs off before anything is resent)
    │     EXCHANGE_UNAVAILABLE (connect failure before any byte was sent, -1001 except on order placement,
    │         -1008 busy)
    └── ExecutionStatusUnknown  the request MAY have executed: reconcile (GET /api/v3/order), never resend
          EXECUTION_STATUS_UNKNOWN (HTTP 5xx, -1006, -1007, timeout or disconnect after the request was sent;
              -1001 DISCONNECTED on an order placement, `placement=True`: the internal error may have come
              after the matching engine took the order, so it may be live)
          UNKNOWN_ERROR (-1000: "unknown error while processing" says nothing about execution)

Transport failures are classified by whether the request can have left the process: httpx connect
errors and pool timeouts cannot, everything else (read/write timeouts, disconnects, protocol errors) can.
httpx_aiohttp maps aiohttp read timeouts and disconnects to httpx.ConnectTimeout, so the chained aiohttp
cause is inspected first.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import aiohttp
import httpx

from engine.errors import ExchangeError, ExchangeRejected, ExchangeUnavailable, ExecutionStatusUnknown


class Reason(StrEnum):
    RATE_LIMIT = "RATE_LIMIT"
    IP_BANNED = "IP_BANNED"
    INVALID_SYMBOL = "INVALID_SYMBOL"
    FILTER_FAILURE = "FILTER_FAILURE"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    DUPLICATE_ORDER = "DUPLICATE_ORDER"
    ORDER_WOULD_TAKE = "ORDER_WOULD_TAKE"
    MARKET_CLOSED = "MARKET_CLOSED"
    TIMESTAMP_OUT_OF_WINDOW = "TIMESTAMP_OUT_OF_WINDOW"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    INVALID_PARAMETER = "INVALID_PARAMETER"
    EXECUTION_STATUS_UNKNOWN = "EXECUTION_STATUS_UNKNOWN"
    EXCHANGE_UNAVAILABLE = "EXCHANGE_UNAVAILABLE"
    ORDER_REJECTED = "ORDER_REJECTED"
    ORDER_ARCHIVED = "ORDER_ARCHIVED"
    ACCOUNT_TRADING_DISABLED = "ACCOUNT_TRADING_DISABLED"
    WAF_LIMIT = "WAF_LIMIT"
    UNKNOWN_ERROR = "UNKNOWN_ERROR"


# Exact codes first; message texts refine -2010/-2011 (codes are stable, texts may vary: match loosely)
_BY_CODE: dict[int, tuple[type[ExchangeError], Reason]] = {
    -1000: (ExecutionStatusUnknown, Reason.UNKNOWN_ERROR),
    -1001: (ExchangeUnavailable, Reason.EXCHANGE_UNAVAILABLE),
    -1002: (ExchangeRejected, Reason.PERMISSION_DENIED),
    -1003: (ExchangeUnavailable, Reason.RATE_LIMIT),
    -1006: (ExecutionStatusUnknown, Reason.EXECUTION_STATUS_UNKNOWN),
    -1007: (ExecutionStatusUnknown, Reason.EXECUTION_STATUS_UNKNOWN),
    -1008: (ExchangeUnavailable, Reason.EXCHANGE_UNAVAILABLE),
    -1013: (ExchangeRejected, Reason.FILTER_FAILURE),
    -1015: (ExchangeUnavailable, Reason.RATE_LIMIT),
    -1021: (ExchangeRejected, Reason.TIMESTAMP_OUT_OF_WINDOW),
    -1022: (ExchangeRejected, Reason.INVALID_SIGNATURE),
    -1121: (ExchangeRejected, Reason.INVALID_SYMBOL),
    -2011: (ExchangeRejected, Reason.UNKNOWN_ORDER),
    -2013: (ExchangeRejected, Reason.UNKNOWN_ORDER),
    -2026: (ExchangeRejected, Reason.ORDER_ARCHIVED),
    -2014: (ExchangeRejected, Reason.PERMISSION_DENIED),
    -2015: (ExchangeRejected, Reason.PERMISSION_DENIED),
}

_BY_TEXT: tuple[tuple[str, Reason], ...] = (
    ("market is closed", Reason.MARKET_CLOSED),
    ("insufficient balance", Reason.INSUFFICIENT_BALANCE),
    ("duplicate order", Reason.DUPLICATE_ORDER),
    ("would immediately match", Reason.ORDER_WOULD_TAKE),
    ("not permitted for this account", Reason.PERMISSION_DENIED),
    ("trading is not enabled", Reason.PERMISSION_DENIED),
    ("may not place or cancel orders", Reason.ACCOUNT_TRADING_DISABLED),
    ("action is disabled on this account", Reason.ACCOUNT_TRADING_DISABLED),
    ("cancel restrictions", Reason.ORDER_REJECTED),
)


def _classify(
    http_status: int | None, code: int | None, msg: str, placement: bool
) -> tuple[type[ExchangeError], Reason]:
    text = msg.lower()
    if http_status == 418:
        return ExchangeUnavailable, Reason.IP_BANNED
    if http_status == 429:
        return ExchangeUnavailable, Reason.RATE_LIMIT
    if http_status == 403:
        # A WAF block (rest-api.md "HTTP Return Codes"), not an answer about the key: back off, retry later
        return ExchangeUnavailable, Reason.WAF_LIMIT
    if code == -1001 and placement:
        return ExecutionStatusUnknown, Reason.EXECUTION_STATUS_UNKNOWN
    if code in (-1006, -1007) or (http_status is not None and http_status >= 500):
        # 5xx: "execution status UNKNOWN — do not treat as failure" (whatever code came with it)
        return ExecutionStatusUnknown, Reason.EXECUTION_STATUS_UNKNOWN
    if code in (-2010, -2011, -1013, -1010, -2038):
        for needle, reason in _BY_TEXT:
            if needle in text:
                return ExchangeRejected, reason
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code]
    if code is not None and -1199 <= code <= -1100:
        return ExchangeRejected, Reason.INVALID_PARAMETER
    if code is not None and -2099 <= code <= -2000:
        return ExchangeRejected, Reason.ORDER_REJECTED
    if http_status == 401:
        return ExchangeRejected, Reason.PERMISSION_DENIED
    return ExchangeRejected, Reason.UNKNOWN_ERROR


def map_binance_error(
    http_status: int | None,
    code: int | None,
    msg: str = "",
    *,
    retry_after_s: float | None = None,
    placement: bool = False,
) -> ExchangeError:
    """The engine error for one Binance error answer (HTTP status and/or `{code, msg}`).

    `placement` says the request placed an order (POST /api/v3/order and the like): then -1001 means the
    order may be live (reconcile by query) rather than "not executed".
    """
    cls, reason = _classify(http_status, code, msg, placement)
    text = msg or f"HTTP {http_status}"
    return cls(text, reason=reason.value, code=code, http_status=http_status, retry_after_s=retry_after_s)


def parse_error_body(body: bytes) -> tuple[int | None, str]:
    """`{code, msg}` from a response body; (None, text) when it is not Binance's JSON error shape."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return None, body[:200].decode("utf-8", "replace")
    if isinstance(data, dict) and isinstance(data.get("code"), int):
        return data["code"], str(data.get("msg", ""))
    return None, body[:200].decode("utf-8", "replace")


_NOT_SENT_AIOHTTP: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
)
_SENT_AIOHTTP: tuple[type[BaseException], ...] = (
    aiohttp.ServerDisconnectedError,
    aiohttp.SocketTimeoutError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientOSError,
)
_NOT_SENT_HTTPX: tuple[type[BaseException], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
)


def request_was_sent(exc: BaseException) -> bool:
    """Whether the failed request may have reached the venue. When in doubt: True."""
    cause = exc.__cause__
    if isinstance(cause, _NOT_SENT_AIOHTTP):
        return False
    if isinstance(cause, _SENT_AIOHTTP):
        return True
    return not isinstance(exc, _NOT_SENT_HTTPX)


def map_transport_error(exc: BaseException, *, what: str = "request") -> ExchangeError:
    """The engine error for a transport failure (no HTTP answer at all)."""
    detail = f"{what} failed: {type(exc).__name__}: {exc}".rstrip(": ")
    if request_was_sent(exc):
        return ExecutionStatusUnknown(detail, reason=Reason.EXECUTION_STATUS_UNKNOWN.value)
    return ExchangeUnavailable(detail, reason=Reason.EXCHANGE_UNAVAILABLE.value)


def is_retryable(err: ExchangeError) -> bool:
    """True when resending cannot duplicate anything: the venue did not execute the request."""
    return isinstance(err, ExchangeUnavailable)
