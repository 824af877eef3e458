"""Signature, API key and timing rules: Binance's published vectors in-process, then over real sockets."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from adapters.simulator.auth import check_timestamp, parse_params, verify_signature
from adapters.venue.errors import VenueError
from tests.simulator.helpers import KEY, START_MS, FakeClock, SignedClient, hmac_hex, limit_buy

DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
PAYLOAD_A = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
SIG_A = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
PAYLOAD_B = PAYLOAD_A.replace("LTCBTC", quote("１２３４５６"))
SIG_B = "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
QUERY_C = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
BODY_C = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
SIG_C = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"


@pytest.mark.parametrize(
    ("query", "body"),
    [
        (f"{PAYLOAD_A}&signature={SIG_A}", ""),
        (f"{PAYLOAD_A}&signature={SIG_A.upper()}", ""),  # hex is case-insensitive
        (f"{PAYLOAD_B}&signature={SIG_B}", ""),
        (QUERY_C, f"{BODY_C}&signature={SIG_C}"),
        (f"{QUERY_C}&signature={SIG_C}", BODY_C),
        ("", f"{PAYLOAD_A}&signature={SIG_A}"),
    ],
)
def test_binance_doc_vectors_verify(query: str, body: str) -> None:
    verify_signature(query.encode(), body.encode(), DOC_SECRET)


@pytest.mark.parametrize(
    ("query", "body"),
    [
        (f"{PAYLOAD_A}&signature={SIG_B}", ""),
        (f"{PAYLOAD_A.replace('price=0.1', 'price=0.2')}&signature={SIG_A}", ""),
        # the unencoded unicode symbol is not what was signed
        (f"{PAYLOAD_A.replace('LTCBTC', '１２３４５６')}&signature={SIG_B}", ""),
        (BODY_C, f"{QUERY_C}&signature={SIG_C}"),  # concatenation order is query then body
    ],
)
def test_tampered_payloads_fail(query: str, body: str) -> None:
    with pytest.raises(VenueError) as exc:
        verify_signature(query.encode(), body.encode(), DOC_SECRET)
    assert (exc.value.code, exc.value.msg) == (-1022, "Signature for this request is not valid.")


def test_missing_signature_is_mandatory_param() -> None:
    with pytest.raises(VenueError) as exc:
        verify_signature(PAYLOAD_A.encode(), b"", DOC_SECRET)
    assert exc.value.code == -1102


def test_query_wins_over_body_and_duplicates_are_refused() -> None:
    assert parse_params(b"side=SELL", b"side=BUY&price=1") == {"side": "SELL", "price": "1"}
    with pytest.raises(VenueError) as exc:
        parse_params(b"side=SELL&side=BUY", b"")
    assert exc.value.code == -1101


@pytest.mark.parametrize(
    ("offset_ms", "recv_window", "ok"),
    [
        (0, None, True),
        (-5000, None, True),  # exactly recvWindow old: accepted
        (-5001, None, False),
        (999, None, True),  # ahead by less than 1000 ms
        (1000, None, False),  # timestamp >= serverTime + 1000
        (-59_000, "60000", True),
        (-7000, "6000.346", False),
        (-6000, "6000.346", True),
    ],
)
def test_timestamp_window(offset_ms: int, recv_window: str | None, ok: bool) -> None:
    params = {"timestamp": str(START_MS + offset_ms)}
    if recv_window is not None:
        params["recvWindow"] = recv_window
    if ok:
        check_timestamp(params, START_MS)
    else:
        with pytest.raises(VenueError) as exc:
            check_timestamp(params, START_MS)
        assert exc.value.code == -1021


def test_microsecond_timestamps_are_accepted() -> None:
    check_timestamp({"timestamp": str(START_MS * 1000 - 4_000_000)}, START_MS)


# ----- over the socket ---------------------------------------------------------------------------------


def test_signed_request_ok_in_query_and_in_body(fake_client: SignedClient) -> None:
    assert fake_client.signed("GET", "/api/v3/account").status_code == 200
    r = fake_client.signed("POST", "/api/v3/order/test", limit_buy(), in_body=True)
    assert (r.status_code, r.json()) == (200, {})


def test_mixed_query_and_body_signature(fake_client: SignedClient, clock: FakeClock) -> None:
    query = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
    body = f"quantity=0.001&price=60000&timestamp={clock()}"
    good = fake_client.raw(
        "POST",
        f"/api/v3/order/test?{query}",
        content=f"{body}&signature={hmac_hex(query + body)}",
        headers={"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert good.status_code == 200, good.text
    joined_with_amp = fake_client.raw(
        "POST",
        f"/api/v3/order/test?{query}",
        content=f"{body}&signature={hmac_hex(query + '&' + body)}",
        headers={"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert joined_with_amp.json()["code"] == -1022


def test_percent_encoded_unicode_symbol_passes_signature(fake_client: SignedClient) -> None:
    # the signature over the encoded bytes is valid, so the engine gets to say the symbol is unknown
    r = fake_client.signed("GET", "/api/v3/order", {"symbol": "这是测试币456", "orderId": "1"})
    assert r.json()["code"] == -1121


def test_bad_signature(fake_client: SignedClient) -> None:
    r = fake_client.signed("GET", "/api/v3/account", secret="wrong")
    assert r.status_code == 400
    assert r.json() == {"code": -1022, "msg": "Signature for this request is not valid."}


@pytest.mark.parametrize("key", [None, "unknown-key"])
def test_missing_or_unknown_api_key(fake_client: SignedClient, clock: FakeClock, key: str | None) -> None:
    query = f"timestamp={clock()}"
    headers = {"X-MBX-APIKEY": key} if key else {}
    r = fake_client.raw("GET", f"/api/v3/account?{query}&signature={hmac_hex(query)}", headers=headers)
    assert r.status_code == 401
    assert r.json() == {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}


def test_missing_timestamp(fake_client: SignedClient) -> None:
    r = fake_client.raw("GET", f"/api/v3/account?signature={hmac_hex('')}", headers={"X-MBX-APIKEY": KEY})
    assert r.status_code == 400
    assert r.json()["code"] == -1102
    assert "'timestamp'" in r.json()["msg"]


def test_timestamp_too_old_and_too_new(fake_client: SignedClient, clock: FakeClock) -> None:
    old = fake_client.signed("GET", "/api/v3/account", timestamp=clock() - 5001)
    assert old.json() == {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
    ahead = fake_client.signed("GET", "/api/v3/account", timestamp=clock() + 1000)
    assert ahead.json() == {
        "code": -1021,
        "msg": "Timestamp for this request was 1000ms ahead of the server's time.",
    }
    assert fake_client.signed("GET", "/api/v3/account", timestamp=clock() + 999).status_code == 200


def test_recv_window(fake_client: SignedClient, clock: FakeClock) -> None:
    stale = clock() - 20_000
    assert (
        fake_client.signed("GET", "/api/v3/account", {"recvWindow": "30000"}, timestamp=stale).status_code
        == 200
    )
    assert (
        fake_client.signed("GET", "/api/v3/account", {"recvWindow": "10000"}, timestamp=stale).json()["code"]
        == -1021
    )
    too_big = fake_client.signed("GET", "/api/v3/account", {"recvWindow": "60001"})
    assert (too_big.status_code, too_big.json()["code"]) == (400, -1102)
