"""The error table: Binance answers and transport failures → engine error class + reason."""

from __future__ import annotations

import aiohttp
import httpx
import pytest

from adapters.binance.errors import (
    is_retryable,
    map_binance_error,
    map_transport_error,
    parse_error_body,
    request_was_sent,
)
from engine.errors import ExchangeRejected, ExchangeUnavailable, ExecutionStatusUnknown

R, U, X = ExchangeRejected, ExchangeUnavailable, ExecutionStatusUnknown

TABLE = [
    # http, code, msg, class, reason
    (
        429,
        -1003,
        "Too much request weight used; current limit is 6000 request weight per 1 MINUTE.",
        U,
        "RATE_LIMIT",
    ),
    (429, -1015, "Too many new orders; current limit is 100 orders per 10 SECOND.", U, "RATE_LIMIT"),
    (429, None, "", U, "RATE_LIMIT"),
    (400, -1003, "Too many requests queued.", U, "RATE_LIMIT"),
    (418, -1003, "Way too much request weight used; IP banned until 1700000000000.", U, "IP_BANNED"),
    (418, None, "", U, "IP_BANNED"),
    (400, -1121, "Invalid symbol.", R, "INVALID_SYMBOL"),
    (400, -1013, "Filter failure: LOT_SIZE", R, "FILTER_FAILURE"),
    (400, -1013, "Filter failure: NOTIONAL", R, "FILTER_FAILURE"),
    (400, -2010, "Account has insufficient balance for requested action.", R, "INSUFFICIENT_BALANCE"),
    (400, -2010, "Duplicate order sent.", R, "DUPLICATE_ORDER"),
    (400, -2010, "Order would immediately match and take.", R, "ORDER_WOULD_TAKE"),
    (400, -2010, "Market is closed.", R, "MARKET_CLOSED"),
    (400, -1013, "Market is closed.", R, "MARKET_CLOSED"),
    (400, -2010, "This symbol is not permitted for this account.", R, "PERMISSION_DENIED"),
    (400, -2010, "Order would trigger immediately.", R, "ORDER_REJECTED"),
    (400, -1021, "Timestamp for this request is outside of the recvWindow.", R, "TIMESTAMP_OUT_OF_WINDOW"),
    (400, -1022, "Signature for this request is not valid.", R, "INVALID_SIGNATURE"),
    (401, -2015, "Invalid API-key, IP, or permissions for action.", R, "PERMISSION_DENIED"),
    (401, -2014, "API-key format invalid.", R, "PERMISSION_DENIED"),
    (401, -1002, "You are not authorized to execute this request.", R, "PERMISSION_DENIED"),
    (401, None, "", R, "PERMISSION_DENIED"),
    # rest-api.md "HTTP Return Codes": 403 is a WAF rule (rate limit or security block), not the key
    (403, None, "<html>WAF</html>", U, "WAF_LIMIT"),
    (403, -2015, "Invalid API-key, IP, or permissions for action.", U, "WAF_LIMIT"),
    # errors.md, messages for -2010/-2011: trading disabled on the account (final until support lifts it)
    (400, -2010, "This account may not place or cancel orders.", R, "ACCOUNT_TRADING_DISABLED"),
    (400, -2011, "This account may not place or cancel orders.", R, "ACCOUNT_TRADING_DISABLED"),
    (400, -2010, "This action is disabled on this account.", R, "ACCOUNT_TRADING_DISABLED"),
    (400, -2011, "Unknown order sent.", R, "UNKNOWN_ORDER"),
    (400, -2011, "Order was not canceled due to cancel restrictions.", R, "ORDER_REJECTED"),
    (400, -2013, "Order does not exist.", R, "UNKNOWN_ORDER"),
    (
        400,
        -1102,
        "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
        R,
        "INVALID_PARAMETER",
    ),
    (400, -1111, "Parameter 'quantity' has too much precision.", R, "INVALID_PARAMETER"),
    (400, -1100, "Illegal characters found in a parameter.", R, "INVALID_PARAMETER"),
    (500, None, "Internal Server Error", X, "EXECUTION_STATUS_UNKNOWN"),
    (502, None, "Bad Gateway", X, "EXECUTION_STATUS_UNKNOWN"),
    (503, -1008, "Server is currently overloaded", X, "EXECUTION_STATUS_UNKNOWN"),  # 5xx wins: may have run
    (
        400,
        -1006,
        "An unexpected response was received from the message bus. Execution status unknown.",
        X,
        "EXECUTION_STATUS_UNKNOWN",
    ),
    (
        408,
        -1007,
        "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
        X,
        "EXECUTION_STATUS_UNKNOWN",
    ),
    (
        400,
        -1001,
        "Internal error; unable to process your request. Please try again.",
        U,
        "EXCHANGE_UNAVAILABLE",
    ),
    (400, -1008, "Server is currently overloaded with other requests.", U, "EXCHANGE_UNAVAILABLE"),
    (400, -2021, "Order cancel-replace partially failed.", R, "ORDER_REJECTED"),
    (
        400,
        -2026,
        "Order was canceled or expired with no executed qty over 90 days ago and has been archived.",
        R,
        "ORDER_ARCHIVED",
    ),
    (400, -1000, "An unknown error occurred while processing the request.", X, "UNKNOWN_ERROR"),
    (400, -9999, "something new", R, "UNKNOWN_ERROR"),
    (404, None, "not found", R, "UNKNOWN_ERROR"),
]


@pytest.mark.parametrize(("http", "code", "msg", "cls", "reason"), TABLE)
def test_error_table(http: int, code: int | None, msg: str, cls: type, reason: str) -> None:
    err = map_binance_error(http, code, msg, retry_after_s=7.0 if http in (418, 429) else None)
    assert type(err) is cls
    assert err.reason == reason
    assert err.code == code
    assert err.http_status == http
    assert is_retryable(err) is (cls is U)
    if http in (418, 429):
        assert err.retry_after_s == 7.0


DISCONNECTED = "Internal error; unable to process your request. Please try again."

# errors.md -1001 DISCONNECTED: on an order placement the order may be live (reconcile by query, never
# resend); on any other request it was not executed and may be retried
PLACEMENT_TABLE = [
    (400, -1001, DISCONNECTED, True, X, "EXECUTION_STATUS_UNKNOWN"),
    (400, -1001, DISCONNECTED, False, U, "EXCHANGE_UNAVAILABLE"),
    (400, -1008, "Server is currently overloaded with other requests.", True, U, "EXCHANGE_UNAVAILABLE"),
    (400, -2010, "Duplicate order sent.", True, R, "DUPLICATE_ORDER"),
]


@pytest.mark.parametrize(("http", "code", "msg", "placement", "cls", "reason"), PLACEMENT_TABLE)
def test_error_table_by_endpoint(
    http: int, code: int, msg: str, placement: bool, cls: type, reason: str
) -> None:
    err = map_binance_error(http, code, msg, placement=placement)
    assert type(err) is cls
    assert err.reason == reason
    assert is_retryable(err) is (cls is U)


def test_parse_error_body() -> None:
    assert parse_error_body(b'{"code":-1121,"msg":"Invalid symbol."}') == (-1121, "Invalid symbol.")
    assert parse_error_body(b"<html>oops</html>") == (None, "<html>oops</html>")
    assert parse_error_body(b"{}") == (None, "{}")


REQ = httpx.Request("POST", "http://127.0.0.1/api/v3/order")


def _chained(outer: Exception, cause: BaseException) -> Exception:
    outer.__cause__ = cause
    return outer


class _Key:
    host, port, is_ssl, ssl, proxy, proxy_auth, proxy_headers_hash = (
        "127.0.0.1",
        1,
        False,
        True,
        None,
        None,
        None,
    )


TRANSPORT = [
    (httpx.ConnectError("refused", request=REQ), False),
    (httpx.ConnectTimeout("slow", request=REQ), False),
    (httpx.PoolTimeout("pool", request=REQ), False),
    (httpx.ReadTimeout("read", request=REQ), True),
    (httpx.WriteTimeout("write", request=REQ), True),
    (httpx.RemoteProtocolError("Server disconnected without sending a response.", request=REQ), True),
    (httpx.ReadError("reset", request=REQ), True),
    # httpx_aiohttp maps aiohttp read timeouts and disconnects to ConnectTimeout: the cause decides
    (_chained(httpx.ConnectTimeout("x"), aiohttp.SocketTimeoutError("read")), True),
    (_chained(httpx.ConnectTimeout("x"), aiohttp.ServerDisconnectedError()), True),
    (_chained(httpx.ConnectTimeout("x"), aiohttp.ConnectionTimeoutError("connect")), False),
    (
        _chained(httpx.ConnectTimeout("x"), aiohttp.ClientConnectorError(_Key(), OSError(111, "refused"))),
        False,
    ),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("exc", "sent"), TRANSPORT)
def test_transport_failures_split_on_whether_the_request_left(exc: Exception, sent: bool) -> None:
    assert request_was_sent(exc) is sent
    err = map_transport_error(exc, what="POST /api/v3/order")
    if sent:
        assert type(err) is ExecutionStatusUnknown
        assert err.reason == "EXECUTION_STATUS_UNKNOWN"
    else:
        assert type(err) is ExchangeUnavailable
        assert err.reason == "EXCHANGE_UNAVAILABLE"
    assert "POST /api/v3/order" in str(err)
