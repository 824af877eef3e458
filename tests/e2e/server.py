"""Test helpers: the PropBot API on a real uvicorn server (127.0.0.1, port 0) in a background thread,
settings for the paper profile or for the testnet profile pointed at a local simulator."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.app import create_app
from api.auth import OperatorStore
from api.serving import server_config
from api.settings import Settings, load_settings
from engine.guardrails.approvals import sign_approval

ROLES = ("admin", "trader", "viewer", "auditor")
SIM_KEY = "e2e-sim-key"
SIM_SECRET = "e2e-sim-secret"


def add_operators(data_dir: Path) -> dict[str, str]:
    """One operator per role, named after it, and the second admin approver2; returns id -> token."""
    store = OperatorStore(data_dir / "operators.json")
    tokens = {role: store.add(role, role) for role in ROLES}
    # The second operator of the two-man rule (signs with its own key; submits approvals with this token)
    tokens["approver2"] = store.add("approver2", "admin")
    return tokens


class ApiServer:
    """`with ApiServer(settings) as api: api.client("admin").get("/api/status")`."""

    def __init__(
        self, settings: Settings, tokens: dict[str, str] | None = None, *, served: bool = False
    ) -> None:
        """`served`: on `propbot serve`'s own uvicorn configuration (api.serving: its HTTP protocol, limits
        and read deadline) instead of uvicorn's defaults."""
        self.settings = settings
        self.tokens = tokens if tokens is not None else add_operators(settings.data_dir)
        self.notices: list[str] = []
        self.app = create_app(settings, announce=self.notices.append)
        if served:
            config = server_config(self.app, "127.0.0.1", 0, log_level="warning", lifespan="on")
        else:
            config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._clients: list[httpx.Client] = []
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def start(self) -> ApiServer:
        self._thread = threading.Thread(target=self._server.run, name="propbot-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("API server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        for c in self._clients:
            c.close()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)

    def client(self, role: str | None = None, token: str | None = None) -> httpx.Client:
        headers = {}
        if role is not None or token is not None:
            headers["Authorization"] = f"Bearer {token or self.tokens[role or '']}"
        c = httpx.Client(base_url=self.base_url, headers=headers, timeout=20)
        self._clients.append(c)
        return c

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def paper_settings(data_dir: Path, **overrides: Any) -> Settings:
    config = {
        "profile": "paper",
        "exchange": "paper",
        "paper": {"price_interval_s": 0},  # frozen prices: resting orders stay resting
        **overrides,
    }
    path = data_dir / "config.paper.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return load_settings(config_file=path, data_dir=data_dir, env={})


def sim_settings(
    data_dir: Path,
    rest_url: str,
    ws_url: str,
    env: dict[str, str] | None = None,
    *,
    ws_api: bool = False,
    **overrides: Any,
) -> Settings:
    """The testnet profile routed to a local simulator, keys from a test environment (never os.environ);
    `ws_api` routes the user data stream to the simulator's WebSocket API too."""
    routing = {"base_url_rest": rest_url, "base_url_ws": ws_url}
    if ws_api:
        routing["base_url_ws_api"] = f"{ws_url}/ws-api/v3"
    config: dict[str, Any] = {
        "profile": "testnet",
        "exchange": "binance_spot",
        "routing": routing,
        "safe_mode": True,
        "preflight": {
            "time_skew_ms_max": 250,
            "ping_timeout_ms": 1500,
            "permissions_required": ["SPOT_TRADE"],
            "refresh_s": 0.5,  # the background monitor measures often, so tests see a fault quickly
            "account_refresh_s": 0.5,
        },
        "binance": {"poll_interval_s": 0.1, "timeout_s": 5},
        "orders": {"unknown_grace_s": 2, "reconcile_interval_s": 0.05},
        **overrides,
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "config.testnet.yaml"
    path.write_text(yaml.safe_dump(config))
    base_env = {"BINANCE_API_KEY_TESTNET": SIM_KEY, "BINANCE_API_SECRET_TESTNET": SIM_SECRET, **(env or {})}
    if "BINANCE_API_PRIVATE_KEY_FILE_TESTNET" in base_env and "BINANCE_API_SECRET_TESTNET" not in (env or {}):
        del base_env["BINANCE_API_SECRET_TESTNET"]  # the private key comes from the file instead
    return load_settings(config_file=path, data_dir=data_dir, env=base_env)


def journal_rows(client: httpx.Client, **filters: Any) -> list[dict[str, Any]]:
    """Every journal row matching `filters`, following the after_seq cursor."""
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        r = client.get("/api/journal", params={**filters, "after_seq": after, "limit": 1000})
        assert r.status_code == 200, r.text
        body = r.json()
        out.extend(body["items"])
        after = body["next_after_seq"]
        if not body["has_more"]:
            return out


@contextmanager
def simulator_and_api(
    data_dir: Path,
    env: dict[str, str] | None = None,
    sim_kwargs: dict[str, Any] | None = None,
    *,
    ws_api: bool = False,
    **overrides: Any,
) -> Iterator[tuple[Any, ApiServer]]:
    """A Binance simulator on loopback and the API on the testnet profile routed to it."""
    from adapters.simulator.server import SimulatorServer

    with SimulatorServer(SIM_KEY, SIM_SECRET, **(sim_kwargs or {})) as sim:
        settings = sim_settings(data_dir, sim.base_url, sim.ws_url, env, ws_api=ws_api, **overrides)
        with ApiServer(settings) as api:
            yield sim, api


def approver_key() -> tuple[Ed25519PrivateKey, str]:
    """A fresh Ed25519 key and its public half as approvals.public_keys wants it (raw, base64)."""
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, base64.b64encode(raw).decode()


def approval_token(key: Ed25519PrivateKey, approver: str, session_id: str, ttl_s: int = 900) -> str:
    claims = {
        "approver": approver,
        "session_id": session_id,
        "action": "arm",
        "nonce": secrets.token_hex(16),
        "expires_at": int(time.time()) + ttl_s,
    }
    return sign_approval(key, claims)


def small_limit(api: ApiServer, symbol: str) -> dict[str, str]:
    """A resting BUY: 5% under the market, notional just above the venue's minimum, on its tick and step."""
    engine = api.runtime.engine
    rules, last = engine.orders.rules[symbol], engine.orders.last_prices[symbol]
    tick, step = rules.tick_size, rules.step_size
    price = (last * Decimal("0.95") / tick).to_integral_value(ROUND_DOWN) * tick
    notional = max(rules.min_notional, Decimal(5)) * Decimal("1.2")
    qty = (notional / price / step).to_integral_value(ROUND_UP) * step
    return {
        "symbol": symbol,
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": f"{qty.normalize():f}",
        "price": f"{price.normalize():f}",
    }


def go_live(api: ApiServer, key: Any) -> None:
    admin = api.client("admin")
    refused = admin.post("/api/session/arm")
    assert (refused.status_code, refused.json()["reason"]) == (409, "approval_required")
    session_id = admin.get("/api/session").json()["session"]["session_id"]  # unique to this journal
    token = approval_token(key, "approver2", session_id)
    armed = admin.post("/api/session/arm", json={"token": token})
    assert armed.status_code == 200, armed.text
    assert armed.json()["session"]["state"] == "ARMED"
    live = admin.post("/api/session/go_live")
    assert live.status_code == 200, live.text
    assert live.json()["session"]["state"] == "LIVE"
    assert live.json()["order_mode"] == "live"
