"""`propbot demo`: the whole story in one command, on this machine only.

It starts the Binance simulator and a PropBot engine on the testnet profile routed to it, both in this
process on free loopback ports, with a temporary data dir (or --data-dir), and walks through it with
three operators (alice and bob, admins; carol, trader): ping, account, a SAFE order, an approval
request approved by bob with his own key (the functions of `propbot approve --request`), arm, go live, a
real order that fills, the position and P&L, a cancel, the kill switch, resume. Each step prints what it
did and the journal rows it wrote; then both servers stop and the journal is verified as
`propbot journal verify --check-approvals` does it. Nothing is left running: the servers are threads of
this process, stopped before it returns.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from api.cli_common import CliError

_SYMBOL = "BTCUSDT"
_STEP_TIMEOUT_S = 20.0
_OPERATORS = (("alice", "admin"), ("bob", "admin"), ("carol", "trader"))


class _Threaded:
    """A uvicorn server in a thread of this process, on a free loopback port."""

    def __init__(self, app: Any, name: str) -> None:
        import uvicorn

        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)
        self.port = 0

    def start(self) -> _Threaded:
        self._thread.start()
        deadline = time.monotonic() + _STEP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise CliError(f"{self._thread.name} did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=_STEP_TIMEOUT_S)


def _until(what: str, check: Callable[[], Any]) -> Any:
    """Poll `check` until it returns something truthy.

    Raises:
        CliError: naming `what`, after _STEP_TIMEOUT_S."""
    deadline = time.monotonic() + _STEP_TIMEOUT_S
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CliError(f"demo: timed out waiting for {what}")
        time.sleep(0.05)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class _Story:
    """The API as the three operators see it, and the journal rows each step wrote."""

    def __init__(self, base_url: str, tokens: dict[str, str], echo: Callable[[str], None]) -> None:
        import httpx

        self._clients = {
            name: httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {t}"}, timeout=20)
            for name, t in tokens.items()
        }
        self._echo = echo
        self._seen = 0
        self.steps = 0

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def call(self, who: str, method: str, path: str, want: int = 200, **kwargs: Any) -> dict[str, Any]:
        r = self._clients[who].request(method, path, **kwargs)
        if r.status_code != want:
            raise CliError(f"demo: {who} {method} {path} answered {r.status_code}: {r.text[:300]}")
        body: dict[str, Any] = r.json()
        return body

    def step(self, title: str) -> None:
        self.steps += 1
        self._echo(f"\n== {self.steps}. {title}")

    def say(self, text: str) -> None:
        self._echo(f"   {text}")

    def rows(self) -> None:
        """Print the journal rows written since the last call (alice is an admin: she may audit)."""
        while True:
            page = self.call("alice", "GET", "/api/journal", params={"after_seq": self._seen, "limit": 1000})
            for row in page["items"]:
                self._echo("   " + _row_line(row))
            self._seen = page["next_after_seq"]
            if not page["has_more"]:
                return


def _row_line(row: dict[str, Any]) -> str:
    # Rows without states: audit rows, and trade rows (a trade journaled after its quantity)
    move = f"{row['from_state'] or '∅'} → {row['to_state']}" if row["to_state"] else row["stream"]
    outcome = row["payload"].get("outcome") or row["payload"].get("refused") or ""
    extra = f" {json.dumps(outcome, separators=(',', ':'))}" if outcome else ""
    return (
        f"journal #{row['seq']:<3} {row['stream']:<8} {row['stream_id'][:28]:<28} {row['trigger']:<15} "
        f"{move:<28} by {row['actor']}{extra}"
    )


def _config(sim_rest: str, sim_ws: str, approver_public_key: str) -> dict[str, Any]:
    """The demo's own engine: the testnet profile routed to the simulator, with safe_mode OFF so that
    go_live is possible at all (orders still go to /order/test until the session is LIVE)."""
    return {
        "profile": "testnet",
        "exchange": "binance_spot",
        "routing": {
            "base_url_rest": sim_rest,
            "base_url_ws": sim_ws,
            "base_url_ws_api": f"{sim_ws}/ws-api/v3",
        },
        "safe_mode": False,
        "symbols": [_SYMBOL],
        "approvals": {
            "two_man_rule": True,
            "require_token": True,
            "ttl_s": 900,
            "public_keys": {"bob": approver_public_key},
        },
        "preflight": {"refresh_s": 0.5, "account_refresh_s": 2},
        "binance": {"poll_interval_s": 0.2, "timeout_s": 5},
        "ws": {"enabled": True, "symbol": _SYMBOL},
    }


@contextmanager
def _data_dir(given: Path | None) -> Iterator[Path]:
    if given is None:
        with tempfile.TemporaryDirectory(prefix="propbot-demo-") as tmp:
            yield Path(tmp)
        return
    if given.exists() and any(given.iterdir()):
        raise CliError(f"{given} is not empty: the demo starts a fresh journal (give a new or empty dir)")
    given.mkdir(parents=True, exist_ok=True)
    yield given


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="keep the demo's journal, config and keys here (a new or empty dir); default: a temporary dir",
)
def demo(data_dir: Path | None) -> int:
    """Run the simulator and an engine on loopback and walk from a SAFE order to LIVE and back."""
    started = time.monotonic()
    with _data_dir(data_dir) as folder:
        code = _run(folder, click.echo)
        if data_dir is None:
            click.echo(f"\n(the temporary data dir {folder} is removed)")
    click.echo(f"demo finished in {time.monotonic() - started:.1f} s")
    return code


def _run(folder: Path, echo: Callable[[str], None]) -> int:
    import httpx
    import yaml
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from adapters.simulator.server import SimulatorServer
    from api.app import create_app
    from api.auth import OperatorStore, write_private
    from api.settings import load_settings

    sim_key, sim_secret = f"demo-{secrets.token_hex(4)}", secrets.token_hex(16)
    # bob's approver key, as `propbot keygen` makes it (on his own machine in real life)
    bob_key = Ed25519PrivateKey.generate()
    pem = bob_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key_file = folder / "bob-approver.pem"
    write_private(key_file, pem)
    public = base64.b64encode(
        bob_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()
    store = OperatorStore(folder / "operators.json")
    tokens = {name: store.add(name, role) for name, role in _OPERATORS}

    echo(f"PropBot demo: data dir {folder}")
    with SimulatorServer(sim_key, sim_secret) as sim:
        config_path = folder / "config.testnet.yaml"
        config_path.write_text(yaml.safe_dump(_config(sim.base_url, sim.ws_url, public), sort_keys=False))
        env = {"BINANCE_API_KEY_TESTNET": sim_key, "BINANCE_API_SECRET_TESTNET": sim_secret}
        settings = load_settings(config_file=config_path, data_dir=folder, env=env)
        echo(f"simulator (Binance Spot API) on {sim.base_url}")
        echo(
            f"engine config {config_path}: profile testnet, safe_mode=false set explicitly by the demo so that"
        )
        echo("  go_live is possible; orders still go to /api/v3/order/test until two operators take it LIVE")
        api = _Threaded(create_app(settings, announce=echo), "propbot-demo-api").start()
        base = f"http://127.0.0.1:{api.port}"
        ports = [sim.port, api.port]
        echo(f"PropBot API on {base} (operators: alice admin, bob admin and approver, carol trader)")
        story = _Story(base, tokens, echo)
        try:
            _until("the engine to be ready", lambda: httpx.get(f"{base}/readyz").status_code == 200)
            _walk(story, sim.base_url, key_file)
        finally:
            story.close()
            api.stop()
    echo("\n== verify the journal (propbot journal verify --check-approvals)")
    from api.cli import main

    code = main(
        [
            "journal",
            "verify",
            "--profile",
            "testnet",
            "--config",
            str(config_path),
            "--data-dir",
            str(folder),
            "--check-approvals",
        ]
    )
    left = [p for p in ports if _listening(p)]
    if left:
        raise CliError(f"demo: ports {left} still listening after stop")
    echo(f"stopped: the API (port {ports[1]}) and the simulator (port {ports[0]}); nothing is left listening")
    return code


def _walk(story: _Story, sim_url: str, key_file: Path) -> None:
    import httpx

    from api.cli_keys import describe_request, load_key, read_request, sign_request

    story.rows()  # the session's open row, quietly: what follows is per step
    story.step("ping (carol)")
    ping = story.call("carol", "GET", "/api/live/ping")
    story.say(f"status {ping['status']}, clock skew {ping['clock_skew_ms']} ms, venue {ping['venue']}")
    story.rows()

    story.step("account (carol)")
    account = story.call("carol", "GET", "/api/live/account")
    balances = ", ".join(f"{b['asset']} {b['free']}" for b in account["balances"][:4])
    story.say(f"canTrade {account['canTrade']}, permissions {account['permissions']}; {balances}")
    story.rows()

    price = float(httpx.get(f"{sim_url}/api/v3/ticker/price", params={"symbol": _SYMBOL}).json()["price"])
    resting = {"symbol": _SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
               "price": f"{price * 0.95:.2f}"}  # fmt: skip
    story.step("a SAFE order (carol): the session is TESTNET, so it goes to /api/v3/order/test")
    safe = story.call(
        "carol", "POST", "/api/live/order", json={**resting, "newClientOrderId": "pb-demo-safe-1"}
    )
    story.say(f"mode {safe['mode']}, state {safe['state']}: validated by the venue, never on its book")
    story.rows()

    story.step("approval request (alice asks to arm)")
    req = story.call("alice", "POST", "/api/approvals", want=201)["approval"]
    story.say(f"request {req['id']} {req['status']}: {req['action']} session {req['session_id']}")
    story.rows()

    story.step("approval (bob fetches the request, signs it with his own key, submits the token)")
    fetched = story.call("bob", "GET", f"/api/approvals/{req['id']}")
    request = read_request(json.dumps(fetched), f"GET /api/approvals/{req['id']}")
    story.say(describe_request(request, "bob"))
    token = sign_request(load_key(key_file), "bob", request, 900, time.time())
    approved = story.call("bob", "POST", f"/api/approvals/{req['id']}", json={"token": token})["approval"]
    story.say(f"request {approved['status']} by {approved['approver']}")
    story.rows()

    story.step("arm (alice, with the approved request)")
    armed = story.call("alice", "POST", "/api/session/arm", json={"approval_id": req["id"]})
    story.say(f"session {armed['session']['state']}, approval by {armed['session']['approval']['approver']}")
    story.rows()

    story.step("go live (alice)")
    live = story.call("alice", "POST", "/api/session/go_live")
    story.say(f"session {live['session']['state']}, order mode {live['order_mode']}")
    story.rows()

    story.step("a real order that fills (carol buys 0.002 BTC at the market)")
    buy = {
        "symbol": _SYMBOL,
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.002",
        "newClientOrderId": "pb-demo-buy-1",
    }
    bought = story.call("carol", "POST", "/api/live/order", json=buy)
    story.say(f"mode {bought['mode']}, state {bought['state']}, orderId {bought.get('orderId')}, "
              f"filled {bought['filledQty']}")  # fmt: skip
    story.rows()

    story.step("a fill (carol sells 0.001 BTC at the market)")
    sell = {**buy, "side": "SELL", "quantity": "0.001", "newClientOrderId": "pb-demo-sell-1"}
    sold = story.call("carol", "POST", "/api/live/order", json=sell)
    story.say(f"mode {sold['mode']}, state {sold['state']}, filled {sold['filledQty']}")
    fills = _until("both fills in /api/fills", lambda: _both_fills(story))
    for fill in fills:
        story.say(f"fill {fill['side']} {fill['qty']} @ {fill['price']} fee {fill['commission']} "
                  f"{fill['commissionAsset']} ({fill['clientOrderId']})")  # fmt: skip
    story.rows()

    story.step("position and P&L (from the journal's trades alone)")
    for pos in story.call("carol", "GET", "/api/positions")["positions"]:
        story.say(f"{pos['asset']}/{pos['cost_asset']}: quantity {pos['quantity']}, average cost {pos['avg_cost']}, "
                  f"realized P&L {pos['realized_pnl']}, fees {pos['fees']}")  # fmt: skip

    story.step("cancel (carol places a resting BUY 5 % under the market, then cancels it)")
    rest = story.call(
        "carol", "POST", "/api/live/order", json={**resting, "newClientOrderId": "pb-demo-rest-1"}
    )
    story.say(f"placed: mode {rest['mode']}, state {rest['state']}")
    cancelled = story.call("carol", "POST", "/api/live/cancel",
                           json={"symbol": _SYMBOL, "origClientOrderId": "pb-demo-rest-1"})  # fmt: skip
    story.say(f"cancelled: state {cancelled['state']}")
    story.rows()

    story.step("kill switch (alice: HOLD and cancel every open order)")
    rest = story.call(
        "carol", "POST", "/api/live/order", json={**resting, "newClientOrderId": "pb-demo-rest-2"}
    )
    story.say(f"carol's resting order pb-demo-rest-2: {rest['state']}")
    held = story.call(
        "alice", "POST", "/api/session/hold", json={"reason": "demo kill switch", "cancel_all": True}
    )
    story.say(f"session {held['session']['state']}: {held['session']['hold_reason']}")
    state = _until("the kill switch's cancel", lambda: _cancelled(story, "pb-demo-rest-2"))
    story.say(f"pb-demo-rest-2: {state}")
    refused = story.call("carol", "POST", "/api/live/order", want=409,
                         json={**resting, "newClientOrderId": "pb-demo-rest-3"})  # fmt: skip
    story.say(f"a new order while on HOLD: 409 {refused['reason']}")
    story.rows()

    story.step("resume (alice): back to TESTNET, never straight to LIVE")
    resumed = story.call("alice", "POST", "/api/session/resume")
    story.say(f"session {resumed['session']['state']}, order mode {resumed['order_mode']}")
    story.rows()


def _both_fills(story: _Story) -> list[dict[str, Any]] | None:
    fills = story.call("carol", "GET", "/api/fills", params={"symbol": _SYMBOL})["fills"]
    ours = [f for f in fills if f["clientOrderId"] in ("pb-demo-buy-1", "pb-demo-sell-1")]
    sides = {f["side"] for f in ours}
    return ours if sides == {"BUY", "SELL"} else None


def _cancelled(story: _Story, client_order_id: str) -> str | None:
    state: str = story.call("carol", "GET", f"/api/orders/{client_order_id}")["order"]["state"]
    return state if state == "CANCELLED" else None
