"""Issue 9 over 127.0.0.1: the testnet profile with binance.key_type ED25519 (the private key in an
owner-only file) signs REST and the user data stream with Ed25519 against a simulator that knows only the
public key; binance.self_trade_prevention_mode reaches the venue on every order, and a mode a configured
symbol does not allow keeps the engine from connecting (503 STP_MODE_NOT_ALLOWED)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from adapters.venue import MatchingEngine
from tests.e2e.server import approver_key, go_live, simulator_and_api
from tests.waiting import eventually

ED_KEY = "e2e-ed25519-key"
ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
         "price": "60000.00"}  # fmt: skip
BINANCE = {"poll_interval_s": 0.1, "timeout_s": 5}


def _truth(sim: Any) -> dict[str, Any]:
    return httpx.get(f"{sim.base_url}/_sim/ground_truth").json()  # type: ignore[no-any-return]


def _ed25519(tmp_path: Path) -> tuple[dict[str, Any], dict[str, str], str]:
    """Simulator kwargs registering a fresh Ed25519 key, the env pointing at its 0600 private key file,
    and one line of the key's material (which must never show up anywhere)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    public = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    key_file = tmp_path / "keys" / "testnet-ed25519.pem"
    key_file.parent.mkdir()
    key_file.write_text(pem)
    key_file.chmod(0o600)
    env = {"BINANCE_API_KEY_TESTNET": ED_KEY, "BINANCE_API_PRIVATE_KEY_FILE_TESTNET": str(key_file)}
    return {"ed25519_keys": {ED_KEY: public}}, env, pem.splitlines()[1]


def test_an_ed25519_profile_reads_the_account_streams_and_places_a_safe_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: the key material must not reach any of them
    sim_kwargs, env, material = _ed25519(tmp_path)
    with simulator_and_api(
        tmp_path / "data", env, sim_kwargs, ws_api=True, binance={**BINANCE, "key_type": "ED25519"}
    ) as (sim, api):
        assert api.settings.key_type == "ED25519"
        viewer = api.client("viewer")
        account = viewer.get("/api/live/account")
        assert account.status_code == 200, account.text
        assert (account.json()["ok"], account.json()["canTrade"]) == (True, True)
        # the user data stream logs on with the same Ed25519 key (session.logon over the WS API)
        eventually(
            lambda: viewer.get("/api/status").json()["components"]["user_stream"]["detail"]["connected"]
        )
        r = api.client("trader").post("/api/live/order", json={**ORDER, "newClientOrderId": "pb-ed-safe-1"})
        assert r.status_code == 200, r.text
        assert (r.json()["mode"], r.json()["state"]) == ("test", "TESTED")
        truth = _truth(sim)
        assert (truth["test_orders"], truth["real_orders"]) == (1, 0)
        bodies = [account.text, r.text, viewer.get("/api/status").text]
        bodies.append(api.client("auditor").get("/api/journal/export", params={"format": "jsonl"}).text)
        journal_files = [p.read_bytes() for p in (tmp_path / "data").rglob("*.db*")]
        assert material not in repr(api.settings)
        assert material not in repr(api.runtime.engine.exchange.client)
    assert journal_files
    assert all(material not in body for body in bodies)
    assert all(material.encode() not in data for data in journal_files)
    assert material not in caplog.text
    assert all(material not in n for n in api.notices)


def test_an_hmac_signature_for_the_ed25519_key_is_refused(tmp_path: Path) -> None:
    """The control: the same API key with key_type left at HMAC signs with HMAC, which the venue answers
    -1022, so the test above passes only because the profile really signs with Ed25519."""
    sim_kwargs, _, _ = _ed25519(tmp_path)
    hmac_env = {"BINANCE_API_KEY_TESTNET": ED_KEY, "BINANCE_API_SECRET_TESTNET": "not-the-key"}
    with simulator_and_api(tmp_path / "data", hmac_env, sim_kwargs, binance=BINANCE) as (_, api):
        r = api.client("viewer").get("/api/live/account")
        assert (r.status_code, r.json()["reason"]) == (422, "INVALID_SIGNATURE"), r.text


def test_the_configured_stp_mode_is_on_the_order_the_venue_received(tmp_path: Path) -> None:
    key, public = approver_key()
    with simulator_and_api(
        tmp_path, safe_mode=False, approvals={"public_keys": {"approver2": public}},
        binance={**BINANCE, "self_trade_prevention_mode": "EXPIRE_BOTH"},
    ) as (sim, api):  # fmt: skip
        assert api.settings.stp_mode == "EXPIRE_BOTH"
        go_live(api, key)
        r = api.client("trader").post("/api/live/order", json={**ORDER, "newClientOrderId": "pb-stp-live-1"})
        assert (r.status_code, r.json()["state"]) == (200, "ACKED"), r.text
        [order] = [o for o in _truth(sim)["orders"] if o["clientOrderId"] == "pb-stp-live-1"]
        # the simulator's default is EXPIRE_MAKER: EXPIRE_BOTH came from the config
        assert order["selfTradePreventionMode"] == "EXPIRE_BOTH"


def test_an_stp_mode_a_configured_symbol_does_not_allow_fails_closed(tmp_path: Path) -> None:
    venue = MatchingEngine(stp_modes={"ETHUSDT": ("EXPIRE_MAKER", ("NONE", "EXPIRE_MAKER"))})
    with simulator_and_api(
        tmp_path, None, {"engine": venue}, binance={**BINANCE, "self_trade_prevention_mode": "EXPIRE_BOTH"}
    ) as (sim, api):
        trader = api.client("trader")
        r = eventually(lambda: (x := trader.post("/api/live/order", json={**ORDER, "newClientOrderId": "pb-stp-no"}))
                       .status_code == 503 and x)  # fmt: skip
        body = r.json()
        assert body["reason"] == "STP_MODE_NOT_ALLOWED", body
        assert "ETHUSDT allows NONE, EXPIRE_MAKER" in str(body)
        assert api.client("viewer").get("/api/live/account").json()["reason"] == "STP_MODE_NOT_ALLOWED"
        assert not api.runtime.ready
        truth = _truth(sim)
        assert (truth["test_orders"], truth["real_orders"]) == (0, 0)
