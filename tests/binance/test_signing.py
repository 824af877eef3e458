"""Signing against Binance's published vectors (rest-api.md and web-socket-api.md signing examples) and Ed25519 round trips."""

from __future__ import annotations

import base64
from decimal import Decimal
from urllib.parse import parse_qsl, unquote_plus

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from adapters.binance.signing import (
    Ed25519Signer,
    HmacSigner,
    Secret,
    encode_params,
    make_signer,
    signature_payload,
    signed_query,
    ws_api_payload,
)
from tests.binance.helpers import API_KEY, SECRET

ORDER_A = {
    "symbol": "LTCBTC",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "1",
    "price": "0.1",
    "recvWindow": 5000,
    "timestamp": 1499827319559,
}
PAYLOAD_A = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
SIG_A = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
PAYLOAD_B = (
    "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC"
    "&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
)
SIG_B = "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
SIG_C = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"


def test_vector_a_all_in_query() -> None:
    assert encode_params(ORDER_A) == PAYLOAD_A
    assert HmacSigner(SECRET).sign(PAYLOAD_A.encode()) == SIG_A
    assert signed_query(ORDER_A, HmacSigner(SECRET)) == f"{PAYLOAD_A}&signature={SIG_A}"


def test_vector_b_unicode_symbol_is_percent_encoded_before_signing() -> None:
    params = {**ORDER_A, "symbol": "１２３４５６"}
    assert encode_params(params) == PAYLOAD_B
    assert HmacSigner(SECRET).sign(PAYLOAD_B.encode()) == SIG_B
    # Signing the unencoded text gives a different signature: the -1022 trap since 2026-01-15
    raw = unquote_plus(PAYLOAD_B).encode()
    assert HmacSigner(SECRET).sign(raw) != SIG_B


def test_vector_c_query_and_body_concatenated_without_separator() -> None:
    query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
    body = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    payload = signature_payload(query, body)
    assert b"timeInForce=GTCquantity=1" in payload
    assert HmacSigner(SECRET).sign(payload) == SIG_C


WS_PARAMS = {
    "symbol": "BTCUSDT",
    "side": "SELL",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.01000000",
    "price": "52000.00",
    "recvWindow": 100,
    "timestamp": 1645423376532,
    "apiKey": API_KEY,
}


def test_ws_api_vector_sorted_no_encoding() -> None:
    payload = ws_api_payload({**WS_PARAMS, "signature": "ignored"})
    assert (
        payload
        == (
            f"apiKey={API_KEY}&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT"
            "&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
        ).encode()
    )
    assert (
        HmacSigner(SECRET).sign(payload) == "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
    )


def test_ws_api_unicode_vector() -> None:
    params = {
        **WS_PARAMS,
        "symbol": "１２３４５６",
        "side": "BUY",
        "price": "0.10000000",
        "quantity": "1.00000000",
        "recvWindow": 5000,
    }
    payload = ws_api_payload(params)
    assert "symbol=１２３４５６".encode() in payload  # UTF-8, not percent-encoded
    assert (
        HmacSigner(SECRET).sign(payload) == "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"
    )


def _ed25519_pem() -> tuple[str, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    return pem, key


def test_ed25519_sign_verify_round_trip_and_wire_encoding() -> None:
    pem, key = _ed25519_pem()
    signer = Ed25519Signer(Secret(pem))
    query = signed_query(ORDER_A, signer)
    payload, _, wire_sig = query.rpartition("&signature=")
    assert payload == PAYLOAD_A
    # base64 must be percent-encoded on the wire: no raw + / = may remain
    assert not set("+/=") & set(wire_sig)
    sig = base64.b64decode(dict(parse_qsl(query))["signature"])
    assert len(sig) == 64
    key.public_key().verify(sig, PAYLOAD_A.encode())  # raises if wrong


def test_ed25519_signature_with_reserved_chars_is_encoded() -> None:
    pem, _ = _ed25519_pem()
    signer = Ed25519Signer(pem)
    # Over many payloads some base64 signature contains + or /; each must come out percent-encoded
    seen_reserved = False
    for i in range(64):
        raw = signer.sign(f"timestamp={i}".encode())
        wire = signed_query({"timestamp": i}, signer).split("signature=")[1]
        if set("+/") & set(raw):
            seen_reserved = True
            assert "%2B" in wire or "%2F" in wire
        assert wire.endswith("%3D%3D")  # 64 bytes → base64 ends with ==
    assert seen_reserved


def test_make_signer_rejects_wrong_key_kinds() -> None:
    with pytest.raises(ValueError, match="HMAC or ED25519"):
        make_signer("RSA", "x")
    with pytest.raises(ValueError):
        make_signer("ED25519", "not a pem")
    assert isinstance(make_signer("hmac", SECRET), HmacSigner)


def test_secret_never_prints() -> None:
    s = Secret(SECRET)
    assert SECRET not in repr(s)
    assert SECRET not in str(s)
    assert SECRET not in f"{s}"
    assert str(s) == "***"
    assert s.reveal() == SECRET
    assert SECRET not in repr(HmacSigner(s))
    assert Secret(s) == s
    assert Secret("other") != s


def test_values_are_formatted_without_floats() -> None:
    assert encode_params({"q": Decimal("0.00000010"), "flag": True, "none": None}) == "q=0.00000010&flag=true"
    assert encode_params({"q": Decimal("1E-7")}) == "q=0.0000001"
    assert encode_params({"symbols": ["BTCUSDT", "BNBBTC"]}) == "symbols=%5B%22BTCUSDT%22%2C%22BNBBTC%22%5D"
    with pytest.raises(TypeError):
        encode_params({"price": 0.1})
