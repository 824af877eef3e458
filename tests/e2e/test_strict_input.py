"""Strict API input: decimals are plain ASCII digit strings (or finite JSON numbers), and a JSON object
with a key twice is refused."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from api.errors import ApiError
from api.schemas import OrderBody, parse_body
from tests.e2e.server import journal_rows

GOOD: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.001",
    "price": "60000",
}

# Each one Decimal() accepts as a finite positive number
LAX_DECIMALS = [
    "١",  # Arabic-Indic digit one
    "٠.٠٠١",
    "１",  # full-width digit one
    "0.00_1",
    "1_000",
    " 0.001",
    "0.001 ",
    "\t0.001",
    "0.001\n",
    "1e-3",
    "1E2",
    "+0.001",
    ".001",
    "1.",
    "0x10",
]


@pytest.mark.parametrize("text", LAX_DECIMALS)
def test_lax_decimal_strings_are_refused_without_echoing_them(text: str) -> None:
    assert Decimal(text.replace("0x10", "16")) > 0 or text == "0x10"
    with pytest.raises(ApiError) as info:
        parse_body(OrderBody, {**GOOD, "quantity": text})
    assert info.value.status == 422
    assert info.value.reason == "invalid_body"
    assert info.value.detail == [
        {"field": "quantity", "error": "must be a plain decimal string of ASCII digits, such as 12.345"}
    ]


@pytest.mark.parametrize(
    "value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("sNaN")]
)
def test_non_finite_numbers_are_refused(value: Decimal) -> None:
    with pytest.raises(ApiError) as info:
        parse_body(OrderBody, {**GOOD, "price": value})
    assert info.value.detail == [{"field": "price", "error": "must be a finite decimal"}]


def test_plain_strings_and_finite_json_numbers_still_work() -> None:
    body = parse_body(OrderBody, {**GOOD, "quantity": "0.001", "price": "60000.50"})
    assert (body.quantity, body.price) == (Decimal("0.001"), Decimal("60000.50"))
    body = parse_body(OrderBody, {**GOOD, "quantity": Decimal("0.001"), "price": 60000})
    assert (body.quantity, body.price) == (Decimal("0.001"), Decimal(60000))


@pytest.mark.parametrize("text", LAX_DECIMALS[:6])
def test_lax_decimals_are_refused_over_http(trader: httpx.Client, text: str) -> None:
    r = trader.post("/api/live/order", json={**GOOD, "price": text})
    assert r.status_code == 422, r.text
    assert r.json()["reason"] == "invalid_body"
    assert text not in r.text


@pytest.mark.parametrize(
    "raw",
    [
        b'{"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001", "quantity": "5"}',
        b'{"symbol": "XYZ", "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}',
        b'{"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001", "x": {"a": 1, "a": 2}}',
    ],
)
def test_a_duplicate_json_key_is_refused(trader: httpx.Client, raw: bytes) -> None:
    r = trader.post("/api/live/order", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json() == {
        "ok": False,
        "reason": "duplicate_key",
        "detail": "a key appears twice in one JSON object",
    }


def test_a_duplicate_key_in_a_session_body_is_refused(admin: httpx.Client) -> None:
    raw = b'{"reason": "a", "reason": "b"}'
    r = admin.post("/api/session/hold", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["reason"] == "duplicate_key"


def test_an_unknown_field_is_reported_without_echoing_its_name(trader: httpx.Client) -> None:
    r = trader.post("/api/live/order", json={**GOOD, "<img src=x>": 1, "quantity2": "1"})
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {
            "field": "(unknown)",
            "error": "2 unknown field(s); the allowed fields are symbol, side, type, timeInForce, quantity, "
            "quoteOrderQty, price, stopPrice, newClientOrderId",
        }
    ]
    assert "img" not in r.text
    assert "quantity2" not in r.text


def test_bad_fields_and_unknown_fields_are_both_reported() -> None:
    with pytest.raises(ApiError) as info:
        parse_body(OrderBody, {**GOOD, "side": "SIDEWAYS", "evil": 1})
    assert [e["field"] for e in info.value.detail] == ["side", "(unknown)"]


def test_a_body_that_is_not_utf8_is_refused_without_quoting_the_byte(trader: httpx.Client) -> None:
    r = trader.post(
        "/api/live/order", content=b'{"symbol": "\xfe"}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json() == {"ok": False, "reason": "malformed_json", "detail": "not UTF-8 at byte 12"}
    assert "0xfe" not in r.text


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/api/live/order", b'{"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": 1e1000000000000000000}'),
        ("/api/live/order", b'{"symbol": "BTCUSDT", "x": [1.5e99999999999999999999]}'),
        ("/api/live/cancel", b'{"symbol": "BTCUSDT", "orderId": 1E+1000000000000000000}'),
        ("/api/session/hold", b'{"reason": "a", "cancel_all": 1e1000000000000000000}'),
    ],
)  # fmt: skip
def test_a_json_number_past_decimals_exponent_range_is_malformed_json_not_a_500(
    admin: httpx.Client, auditor: httpx.Client, path: str, raw: bytes
) -> None:
    # Valid JSON, but Decimal() raised InvalidOperation (not a ValueError) for it: a 500 before the fix
    before = len(journal_rows(auditor, stream="audit"))
    r = admin.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json() == {
        "ok": False,
        "reason": "malformed_json",
        "detail": "a number's exponent is out of range",
    }
    audited = journal_rows(auditor, stream="audit")[before:]
    if path.startswith("/api/live/"):  # one audit row with the refusal; a session body error writes none
        assert [(a["trigger"], a["payload"]["outcome"]) for a in audited] == [
            (path.strip("/").replace("/", "."), {"status": 400, "reason": "malformed_json"})
        ]
    else:
        assert audited == []
    assert auditor.get("/api/journal/verify").json()["ok"] is True


@pytest.mark.parametrize("digits", [65, 5000])
def test_a_json_integer_with_too_many_digits_is_malformed_json_without_interpreter_details(
    admin: httpx.Client, auditor: httpx.Client, digits: int
) -> None:
    raw = b'{"symbol": "BTCUSDT", "orderId": ' + b"9" * digits + b"}"
    r = admin.post("/api/live/cancel", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json() == {
        "ok": False,
        "reason": "malformed_json",
        "detail": "an integer has more than 64 digits",
    }
    assert auditor.get("/api/journal/verify").json()["ok"] is True
