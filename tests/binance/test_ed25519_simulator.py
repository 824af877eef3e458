"""Ed25519 end to end: the client signs with an Ed25519 private key, the simulator verifies the base64
signature with the registered public key (rest-api.md "Ed25519 Keys"), over 127.0.0.1."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from adapters.binance.rest import BinanceSpotClient
from adapters.simulator.server import SimulatorServer
from engine.errors import ExchangeRejected

ED_KEY = "ed25519-api-key"
RAW_KEY = "ed25519-raw-api-key"
_PRIVATE = Ed25519PrivateKey.generate()
_OTHER = Ed25519PrivateKey.generate()


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    public_pem = _PRIVATE.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    raw_b64 = base64.b64encode(_OTHER.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    with SimulatorServer(driver_interval_s=3600, ed25519_keys={ED_KEY: public_pem, RAW_KEY: raw_b64}) as s:
        yield s


def _client(sim: SimulatorServer, api_key: str, private: str, key_type: str = "ED25519") -> BinanceSpotClient:
    urls = {"rest": sim.base_url, "ws": sim.ws_url}
    return BinanceSpotClient("testnet", api_key, private, urls, key_type=key_type)


async def test_account_and_order_round_trip_with_an_ed25519_key(sim: SimulatorServer) -> None:
    client = _client(sim, ED_KEY, _pem(_PRIVATE))
    try:
        account = await client.account()
        assert account["canTrade"] is True
        placed = await client.order(
            {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
             "quantity": "0.00100", "price": "60000.00", "newClientOrderId": "ed-1"}
        )  # fmt: skip
        assert placed["status"] == "NEW"
        found = await client.query_order({"symbol": "BTCUSDT", "origClientOrderId": "ed-1"})
        assert found["orderId"] == placed["orderId"]
        opened = await client.open_orders({"symbol": "BTCUSDT"})
        assert "ed-1" in [o["clientOrderId"] for o in opened]
        cancelled = await client.cancel({"symbol": "BTCUSDT", "origClientOrderId": "ed-1"})
        assert cancelled["status"] == "CANCELED"
    finally:
        await client.aclose()


async def test_a_raw_base64_public_key_is_accepted(sim: SimulatorServer) -> None:
    client = _client(sim, RAW_KEY, _pem(_OTHER))
    try:
        assert (await client.account())["canTrade"] is True
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("api_key", "signer", "key_type"),
    [(ED_KEY, "other", "ED25519"), (ED_KEY, "hmac", "HMAC"), ("simkey", "mine", "ED25519")],
    ids=["wrong-private-key", "hmac-signature-for-an-ed25519-key", "ed25519-signature-for-an-hmac-key"],
)
async def test_a_signature_of_the_wrong_key_is_minus_1022(
    sim: SimulatorServer, api_key: str, signer: str, key_type: str
) -> None:
    private = {"other": _pem(_OTHER), "mine": _pem(_PRIVATE), "hmac": "simsecret"}[signer]
    client = _client(sim, api_key, private, key_type)
    try:
        with pytest.raises(ExchangeRejected) as ei:
            await client.account()
        assert (ei.value.code, ei.value.reason) == (-1022, "INVALID_SIGNATURE")
    finally:
        await client.aclose()


def test_a_key_that_is_not_ed25519_is_refused_at_start() -> None:
    with pytest.raises(ValueError):
        SimulatorServer(ed25519_keys={ED_KEY: "bm90IGEga2V5"})
    with pytest.raises(ValueError):
        SimulatorServer(ed25519_keys={"simkey": base64.b64encode(bytes(32)).decode()})


def test_a_key_registered_at_start_is_ed25519_on_the_websocket_api_too(sim: SimulatorServer) -> None:
    assert ED_KEY in sim.app.state.ws_api.ed25519_keys
    assert RAW_KEY in sim.app.state.ws_api.ed25519_keys
