"""Crash-test harness: `propbot serve` as a real subprocess (so SIGKILL is a real kill -9) on the testnet
profile routed to an in-process simulator, plus the checks every crash must pass after a restart.

The server's config is written per test: safe_mode false (real orders once LIVE), the two-man rule with a
second operator's Ed25519 key, a short unknown-order grace, and risk caps wide enough for a burst. The
preflight skew limit is 1 s because the simulator's latency fault delays /api/v3/time too, which skews the
RTT-midpoint estimate by half the latency. The market-data WebSocket is off: nothing moves the price.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.agreement import journal_agrees_with_venue
from tests.e2e.server import ROLES, SIM_KEY, SIM_SECRET, approval_token, journal_rows

PROPBOT = Path(sys.executable).with_name("propbot")
UNKNOWN_GRACE_S = 4.0
PRICE = 65000  # the simulator's BTCUSDT reference; no WebSocket client, so it never moves
# Never inherit the developer's profile, safe mode or data dir: the config file decides
_SCRUBBED = ("SAFE_MODE", "EXCHANGE_PROFILE", "PROPBOT_DATA_DIR", "PROPBOT_DB_URL", "PROPBOT_ENV_FILE")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiProcess:
    """`propbot serve --profile testnet --config … --data-dir … --port …`, killable with SIGKILL."""

    def __init__(
        self, data_dir: Path, sim_base_url: str, sim_ws_url: str, approvers: dict[str, str],
        *, config_extra: dict[str, Any] | None = None, operators_of: ApiProcess | None = None,
    ) -> None:  # fmt: skip
        """`config_extra`: merged into the config (e.g. account, journal.url); `operators_of`: share that
        server's operators (and tokens) instead of creating new ones (an active and its standby)."""
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = data_dir / "config.testnet.yaml"
        config = {**_config(sim_base_url, sim_ws_url, approvers), **(config_extra or {})}
        self.config_path.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        account = config.get("account")
        suffix = "TESTNET" if account is None else f"TESTNET_{str(account).upper()}"
        self.env = {**env, f"BINANCE_API_KEY_{suffix}": SIM_KEY, f"BINANCE_API_SECRET_{suffix}": SIM_SECRET}
        self.log_path = data_dir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0
        if operators_of is not None:
            shutil.copy2(operators_of.data_dir / "operators.json", data_dir / "operators.json")
            self.tokens = dict(operators_of.tokens)
        else:
            self.tokens = {role: self._add_operator(role) for role in ROLES}
            self._add_operator("admin", "approver2")  # the two-man rule's second operator
        self._clients: list[httpx.Client] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `propbot …` in the data dir (cwd there, so no stray ./.env is read)."""
        return subprocess.run(
            [str(PROPBOT), *args],
            cwd=self.data_dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def _add_operator(self, role: str, operator_id: str | None = None) -> str:
        done = self.cli("operators", "add", operator_id or role, "--role", role, "--profile", "testnet",
                        "--data-dir", str(self.data_dir))  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def start(self, timeout_s: float = 30.0, *, ready: bool = True) -> ApiProcess:
        """Start the server and wait for /readyz (journal replayed and verified, venue reconciled), or
        with `ready=False` only for /healthz (a standby answers, but is not ready)."""
        self.port = _free_port()
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n---- start {self.starts} on port {self.port} ----\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(PROPBOT), "serve", "--profile", "testnet", "--config", str(self.config_path),
                 "--data-dir", str(self.data_dir), "--port", str(self.port)],
                cwd=self.data_dir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"propbot serve exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if (
                    httpx.get(f"{self.base_url}/{'readyz' if ready else 'healthz'}", timeout=2).status_code
                    == 200
                ):
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"propbot serve not ready in {timeout_s}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def kill9(self) -> None:
        """SIGKILL: no lifespan shutdown, no flush, no goodbye to the venue."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        assert self.proc.returncode == -signal.SIGKILL
        for c in self._clients:
            c.close()
        self._clients.clear()

    def stop(self) -> None:
        for c in self._clients:
            c.close()
        self._clients.clear()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def client(self, role: str) -> httpx.Client:
        c = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.tokens[role]}"}, timeout=20
        )
        self._clients.append(c)
        return c

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _config(rest: str, ws: str, approvers: dict[str, str]) -> dict[str, Any]:
    return {
        "profile": "testnet",
        "exchange": "binance_spot",
        "routing": {"base_url_rest": rest, "base_url_ws": ws},
        "safe_mode": False,
        "approvals": {"two_man_rule": True, "require_token": True, "ttl_s": 900, "public_keys": approvers},
        "preflight": {"time_skew_ms_max": 1000, "ping_timeout_ms": 1500, "permissions_required": ["SPOT_TRADE"]},
        "risk": {"max_order_notional": "1000", "max_order_qty": "1", "price_collar_pct": "10",
                 "max_open_orders": 500, "max_orders_per_minute": 10000},
        "ws": {"enabled": False},
        "orders": {"unknown_grace_s": UNKNOWN_GRACE_S, "reconcile_interval_s": 0.05},
        "binance": {"poll_interval_s": 0.2, "timeout_s": 5},
    }  # fmt: skip


def go_live(api: ApiProcess, approver_key: Ed25519PrivateKey) -> None:
    """The two-man rule as an operator meets it: admin arms with approver2's token, then goes live."""
    admin = api.client("admin")
    session_id = admin.get("/api/session").json()["session"]["session_id"]  # unique to this journal
    armed = admin.post(
        "/api/session/arm", json={"token": approval_token(approver_key, "approver2", session_id)}
    )
    assert armed.status_code == 200, armed.text
    live = admin.post("/api/session/go_live")
    assert live.status_code == 200, live.text
    assert live.json()["session"]["state"] == "LIVE"


def order_body(cid: str, kind: str) -> dict[str, str]:
    """`rest`: GTC BUY 5% under the market (stays NEW); `fill`: IOC BUY over the best ask (FILLED)."""
    price = PRICE * 95 // 100 if kind == "rest" else PRICE + 100
    tif = "GTC" if kind == "rest" else "IOC"
    return {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": tif,
            "quantity": "0.0001", "price": str(price), "newClientOrderId": cid}  # fmt: skip


def check_recovered(api: ApiProcess, sim_url: str) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The invariants after a crash and restart; returns (order streams, ground truth) for more checks.

    - `propbot journal verify` passes (hash chain, versions, FSM edges);
    - the session is on HOLD with reason `restart`, and no row after the restart went ARMED or LIVE;
    - no order is left SENT/UNKNOWN once the grace period is over;
    - the simulator never received two orders with one client order id (nothing placed twice);
    - every order the simulator accepted is in the journal exactly once, reconciled to the venue's status;
    - every journaled order the simulator never saw ended REJECTED (nothing invented).
    """
    verify = api.cli("journal", "verify", "--profile", "testnet", "--data-dir", str(api.data_dir))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("journal OK"), verify.stdout

    auditor = api.client("auditor")
    session = api.client("viewer").get("/api/session").json()["session"]
    assert (session["state"], session["hold_reason"]) == ("HOLD", "restart"), session
    srows = journal_rows(auditor, stream="session")
    last_live = max(i for i, r in enumerate(srows) if r["to_state"] == "LIVE")
    after = srows[last_live + 1 :]
    assert after, "no session row after the crash"
    assert (after[0]["trigger"], after[0]["to_state"], after[0]["reason"]) == ("hold", "HOLD", "restart")
    assert [r for r in after if r["to_state"] in ("LIVE", "ARMED")] == []

    return journal_agrees_with_venue(auditor, sim_url, timeout_s=UNKNOWN_GRACE_S + 6)


def assert_answered_from_the_journal(cid: str, r: httpx.Response) -> None:
    """A resend of a journaled id after a crash answers from the journal and places nothing: the order
    as it stands (200, existing), or, for one that ended REJECTED (its request died with the process, or
    the venue refused it), 409 already_rejected: never placed, and the id is spent."""
    body = r.json()
    if r.status_code == 409 and body.get("reason") == "already_rejected":
        assert body["detail"]["state"] == "REJECTED", (cid, r.text)
        return
    assert (r.status_code, body.get("existing")) == (200, True), (cid, r.text)
