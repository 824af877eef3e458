"""A LIVE order through the API next to BinanceSpotClient.order() on the same simulator, in one run.

Run: cd benchmarks && ../.venv/bin/python bench_live.py [--orders 500] [--block 50] [--warmup 50]

- A spawned child runs the simulator (uvicorn, one worker, rate limits lifted) on 127.0.0.1.
- A real `propbot serve --profile testnet` subprocess is routed to it (safe_mode false, an approver's
  Ed25519 public key, risk caps raised, market-data WebSocket off), its admin and trader created with
  `propbot operators add` before it starts. The admin takes the session to LIVE as an operator does: an
  approval token signed with the approver's private key for GET /api/session's session_id, POST
  /api/session/arm, POST /api/session/go_live, each once GET /api/status shows the preflight passing.
- Every order is a LIMIT IOC BUY under the simulator's 65000 book (bench_client.py's ORDER and PRICE): it
  expires without resting. Through the API: POST /api/live/order on one keep-alive httpx.Client, one at a
  time, each answer checked (200, mode "live", EXPIRED), so each is decided, journaled (durable SQLite),
  signed, sent and answered before the next. The baseline: bench_client.py's ClientBlocks
  (BinanceSpotClient.order() on a warm event loop, its default transport) against the same simulator.
  Both send `--warmup` untimed orders, then blocks of `--block` alternate API / client (the first of each
  pair alternating too), so machine noise hits both alike.
- The write-ahead floor, a third side of the same interleaving: a bare FastAPI + pydantic endpoint served
  by api.serving (the stack `propbot serve` runs on) in a child process that, per order, commits the
  request to a raw sqlite3 WAL database with synchronous=FULL (the write-ahead row: durable before the
  venue may see the order), awaits BinanceSpotClient.order() on its warm loop, commits the answer the same
  way (durable before the caller hears it), and answers. It decides nothing, checks nothing and hashes
  nothing: the least any API that journals before sending can cost on this machine — one HTTP hop, two
  durable commits and the client's own order.
Target: API LIVE p50 ≤ 1.3 × client order() p50 (the issue's); printed beside it, API p50 / floor p50 and
floor p50 / client p50 (what the design itself costs over the bare client). Results:
benchmarks/results/live.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from bench_client import KEY, ORDER, PRICE, SECRET, ClientBlocks
from common import free_port, percentiles_ms, save, simulator_process, table, wait_http

from tests.e2e.server import approval_token, approver_key

TARGET = 1.3
PROPBOT = Path(sys.executable).with_name("propbot")
APPROVER = "approver2"  # the two-man rule: a second operator, never the admin who arms
# Never inherit the developer's profile, safe mode, data dir or .env: the config file decides
_SCRUBBED = ("SAFE_MODE", "EXCHANGE_PROFILE", "PROPBOT_DATA_DIR", "PROPBOT_DB_URL", "PROPBOT_ENV_FILE")


def _config(rest: str, approver_public_key: str) -> dict[str, Any]:
    return {
        "profile": "testnet",
        "exchange": "binance_spot",
        "routing": {"base_url_rest": rest, "base_url_ws": "ws" + rest.removeprefix("http")},
        "safe_mode": False,
        "approvals": {"two_man_rule": True, "require_token": True, "ttl_s": 900,
                      "public_keys": {APPROVER: approver_public_key}},
        "preflight": {"time_skew_ms_max": 250, "ping_timeout_ms": 1500, "permissions_required": ["SPOT_TRADE"]},
        "risk": {"max_order_notional": "1000000000", "max_order_qty": "1000", "price_collar_pct": "10",
                 "max_open_orders": 100_000, "max_orders_per_minute": 10_000_000},
        "ws": {"enabled": False},
        "binance": {"poll_interval_s": 2, "timeout_s": 10},
    }  # fmt: skip


class LiveApi:
    """`propbot serve --profile testnet` routed to the simulator, in its own data dir, taken to LIVE."""

    def __init__(self, tmp: Path, sim_base: str) -> None:
        self.data = tmp / "propbot"
        self.data.mkdir()
        self._key, public = approver_key()
        self.config = tmp / "config.testnet.yaml"
        self.config.write_text(yaml.safe_dump(_config(sim_base, public)))
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        self._env = {**env, "BINANCE_API_KEY_TESTNET": KEY, "BINANCE_API_SECRET_TESTNET": SECRET}
        self._cwd = tmp  # no stray ./.env is read there
        self._log_path = tmp / "serve.log"
        self.tokens = {role: self._add_operator(role) for role in ("admin", "trader")}
        self._add_operator("admin", APPROVER)  # the approver must be a configured operator allowed to approve
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._clients: list[httpx.Client] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _add_operator(self, role: str, operator_id: str | None = None) -> str:
        done = subprocess.run(
            [str(PROPBOT), "operators", "add", operator_id or role, "--role", role, "--profile", "testnet",
             "--data-dir", str(self.data)],
            cwd=self._cwd, env=self._env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"propbot operators add {role} exited {done.returncode}: {done.stderr[-500:]}")
        return done.stdout.strip().splitlines()[-1]  # the token is the last line printed

    def start(self) -> None:
        self.port = free_port()
        with self._log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(PROPBOT), "serve", "--profile", "testnet", "--config", str(self.config),
                 "--data-dir", str(self.data), "--port", str(self.port)],
                cwd=self._cwd, env=self._env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_http(f"{self.base}/readyz", self.proc, timeout_s=60)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from None

    def client(self, role: str) -> httpx.Client:
        c = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.tokens[role]}"}, timeout=20
        )
        self._clients.append(c)
        return c

    def go_live(self) -> dict[str, Any]:
        """Arm with the approver's token, go LIVE; each step once the background preflight passes."""
        admin = self.client("admin")
        waits = {"preflight_ok_before_arm_s": self.wait_preflight(admin)}
        session = _ok(admin.get("/api/session"), "GET /api/session")["session"]
        token = approval_token(self._key, APPROVER, session["session_id"])
        armed = _ok(admin.post("/api/session/arm", json={"token": token}), "POST /api/session/arm")
        if armed["session"]["state"] != "ARMED":
            raise RuntimeError(f"POST /api/session/arm answered session state {armed['session']['state']}")
        waits["preflight_ok_before_go_live_s"] = self.wait_preflight(admin)
        live = _ok(admin.post("/api/session/go_live"), "POST /api/session/go_live")
        if (live["session"]["state"], live["order_mode"]) != ("LIVE", "live"):
            raise RuntimeError(
                f"POST /api/session/go_live answered {live['session']}, mode {live['order_mode']}"
            )
        waits["preflight_ok_when_live_s"] = self.wait_preflight(admin)
        return {**waits, "session_id": session["session_id"]}

    def wait_preflight(self, admin: httpx.Client, timeout_s: float = 60.0) -> float:
        """Seconds until GET /api/status shows the preflight component OK (measured every second)."""
        t0 = time.monotonic()
        last: Any = None
        while time.monotonic() - t0 < timeout_s:
            status = _ok(admin.get("/api/status"), "GET /api/status")
            last = status["components"]["preflight"]
            if last["status"] == "OK":
                return time.monotonic() - t0
            time.sleep(0.2)
        raise RuntimeError(f"preflight not OK in {timeout_s}s: {last}")

    def log_tail(self, lines: int = 30) -> str:
        text = self._log_path.read_text(errors="replace") if self._log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        for c in self._clients:
            c.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _ok(response: httpx.Response, call: str) -> Any:
    if response.status_code != 200:
        raise RuntimeError(f"{call} answered {response.status_code}: {response.text[:500]}")
    return response.json()


class OrderPosts:
    """Orders POSTed to /api/live/order on `_http`, one at a time on one keep-alive connection, each
    answer checked: 200, mode live, the IOC expired."""

    name = ""
    tag = ""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http
        self._run = uuid.uuid4().hex[:8]

    def block(self, first: int, k: int) -> list[float]:
        lat = []
        for i in range(first, first + k):
            body = {**ORDER, "price": PRICE, "newClientOrderId": f"pb-{self.tag}-{self._run}-{i}"}
            t0 = time.perf_counter()
            r = self._http.post("/api/live/order", json=body)
            lat.append(time.perf_counter() - t0)
            answer = _ok(r, f"{self.name}: POST /api/live/order")
            if answer.get("mode") != "live" or answer.get("state") != "EXPIRED":
                raise RuntimeError(f"{self.name}: not a LIVE expired IOC: {answer}")
        return lat


class ApiBlocks(OrderPosts):
    """LIVE orders through propbot's POST /api/live/order."""

    name = "API POST /api/live/order (LIVE)"
    tag = "live"

    def __init__(self, api: LiveApi) -> None:
        super().__init__(api.client("trader"))

    def close(self) -> None:
        self._http.close()


_FLOOR_APP = textwrap.dedent(
    """
    import sqlite3, sys
    from contextlib import asynccontextmanager
    from typing import Literal
    from fastapi import FastAPI
    from pydantic import BaseModel, ConfigDict
    from api.serving import serve
    from adapters.binance.rest import BinanceSpotClient

    port, sim, key, secret, db_path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS j (seq INTEGER PRIMARY KEY, payload TEXT NOT NULL)")

    class Order(BaseModel):
        model_config = ConfigDict(extra="forbid")
        symbol: str
        side: Literal["BUY", "SELL"]
        type: Literal["LIMIT", "MARKET"]
        timeInForce: str
        quantity: str
        price: str
        newClientOrderId: str

    def commit(payload: str) -> None:
        db.execute("BEGIN")
        db.execute("INSERT INTO j (payload) VALUES (?)", (payload,))
        db.execute("COMMIT")

    state = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        state["client"] = client = BinanceSpotClient("floor", key, secret, {"rest": sim})
        await client.exchange_info()  # as bench_client: the governor learns the lifted limits
        yield
        await client.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/live/order")
    async def order(body: Order) -> dict[str, object]:
        commit(body.model_dump_json())
        answer = await state["client"].order(body.model_dump())
        commit(str(answer))
        return {"clientOrderId": body.newClientOrderId, "mode": "live", "state": answer["status"]}

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    serve(app, "127.0.0.1", port, log_level="warning")
    """
)


class FloorBlocks(OrderPosts):
    """The write-ahead floor (module docstring)."""

    name = "floor: bare endpoint, 2 raw durable commits + client order()"
    tag = "floor"

    def __init__(self, tmp: Path, sim_base: str) -> None:
        app = tmp / "floor_app.py"
        app.write_text(_FLOOR_APP)
        port = free_port()
        root = str(Path(__file__).resolve().parent.parent)
        args = [sys.executable, str(app), str(port), sim_base, KEY, SECRET, str(tmp / "floor.db")]
        self._proc = subprocess.Popen(args, cwd=tmp, env={**os.environ, "PYTHONPATH": root})
        wait_http(f"http://127.0.0.1:{port}/healthz", self._proc)
        super().__init__(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20))

    def close(self) -> None:
        self._http.close()
        self._proc.terminate()
        self._proc.wait(timeout=10)


def measure(
    api: LiveApi, sim_base: str, tmp: Path, n: int, block: int, warmup: int
) -> dict[str, list[float]]:
    sides: list[Any] = [ApiBlocks(api), ClientBlocks(sim_base), FloorBlocks(tmp, sim_base)]
    lat: dict[str, list[float]] = {s.name: [] for s in sides}
    try:
        for s in sides:
            s.block(0, warmup)
        done, r = 0, 0
        while done < n:
            k = min(block, n - done)
            for s in sides[r % len(sides) :] + sides[: r % len(sides)]:  # each side leads in turn
                lat[s.name] += s.block(warmup + done, k)
            done, r = done + k, r + 1
    finally:
        for s in sides:
            s.close()
    return lat


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=500, help="timed orders on each side")
    parser.add_argument("--block", type=int, default=50, help="orders per block; blocks alternate sides")
    parser.add_argument("--warmup", type=int, default=50, help="untimed orders on each side first")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="propbot-bench-live-") as d,
        simulator_process(KEY, SECRET) as sim,
    ):
        api = LiveApi(Path(d), sim)
        try:
            api.start()
            live = api.go_live()
            lat = measure(api, sim, Path(d), args.orders, args.block, args.warmup)
            final = _ok(api.client("admin").get("/api/session"), "GET /api/session")["session"]["state"]
        except Exception:
            print(f"propbot serve log (tail):\n{api.log_tail()}", file=sys.stderr)
            raise
        finally:
            api.stop()
    rows = []
    for name, values in lat.items():
        p50, p99 = percentiles_ms(values)
        rows.append({"path": name, "orders": len(values), "p50_ms": p50, "p99_ms": p99})
    api_p50, client_p50, floor_p50 = (r["p50_ms"] for r in rows)
    ratio = api_p50 / client_p50
    met = ratio <= TARGET
    table(f"LIMIT IOC BUY under the book, one in flight, {args.orders} timed per side in blocks of {args.block} "
          "(127.0.0.1, simulator in a child)", rows)  # fmt: skip
    table("target", [{"ratio": "API LIVE p50 / client order() p50", "value": ratio, "target": f"≤ {TARGET}",
                      "verdict": "MET" if met else "NOT MET"},
                     {"ratio": "API LIVE p50 / write-ahead floor p50", "value": api_p50 / floor_p50,
                      "target": "", "verdict": ""},
                     {"ratio": "write-ahead floor p50 / client order() p50", "value": floor_p50 / client_p50,
                      "target": "", "verdict": ""}])  # fmt: skip
    print(f"API LIVE p50 / client p50 = {ratio:.3f} (target ≤ {TARGET}): {'MET' if met else 'NOT MET'}")
    save("live", {"benchmark": "live", "orders_per_side": args.orders, "block": args.block,
                  "warmup": args.warmup, "cpus": multiprocessing.cpu_count(), "python": sys.version.split()[0],
                  "go_live": live, "session_state_after": final, "rows": rows,
                  "api_p50_over_client_p50": ratio, "api_p50_over_floor_p50": api_p50 / floor_p50,
                  "floor_p50_over_client_p50": floor_p50 / client_p50, "target": TARGET,
                  "target_met": met})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
