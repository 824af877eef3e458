"""Durable orders through the API against a bare endpoint on the same stack, in one run.

Run: .venv/bin/python benchmarks/bench_api.py [--seconds 10] [--connections 32]

- floor: a bare FastAPI app with one POST endpoint that validates the same JSON body with a pydantic
  model and answers it, served by api.serving (the same uvicorn configuration as `propbot serve`);
- propbot: a real `propbot serve --profile paper` process (durable SQLite journal, WAL, synchronous=FULL)
  with its risk caps raised by a config file for the run; every request is a MARKET order, BUY and SELL
  alternating, each with a new client order id, so each one is decided, journaled (audit row, create,
  preflight, send, fill: two group commits) and filled on the paper venue before it is answered.
Both are loaded by `wrk` (Debian package wrk) at the same connection count, floor first, then propbot,
then the floor again (the ratio uses the mean of the two floor runs, which brackets machine drift).
Targets: propbot req/s ≥ 0.5 × floor, p99 < 50 ms, 0 non-2xx. Results: benchmarks/results/api.json.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from common import ROOT, free_port, save, table, wait_http

TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
PY = sys.executable

_FLOOR_APP = textwrap.dedent(
    """
    import sys
    from decimal import Decimal
    from typing import Literal
    from fastapi import FastAPI
    from pydantic import BaseModel, ConfigDict
    from api.serving import serve

    class Order(BaseModel):
        model_config = ConfigDict(extra="forbid")
        symbol: str
        side: Literal["BUY", "SELL"]
        type: Literal["LIMIT", "MARKET"]
        quantity: Decimal
        newClientOrderId: str

    app = FastAPI()

    @app.post("/api/live/order")
    async def order(body: Order) -> dict[str, object]:
        return {"ok": True, "clientOrderId": body.newClientOrderId, "state": "FILLED", "symbol": body.symbol}

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    serve(app, "127.0.0.1", int(sys.argv[1]), log_level="warning")
    """
)

_WRK_SCRIPT = """
local counter = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function request()
  counter = counter + 1
  local side = (counter % 2 == 1) and "BUY" or "SELL"
  local body = string.format(
    '{"symbol":"BTCUSDT","side":"%s","type":"MARKET","quantity":"0.001","newClientOrderId":"pb-%s-%d-%d"}',
    side, run, tid, counter)
  return wrk.format("POST", "/api/live/order", headers, body)
end
"""


def _wrk(base: str, token: str, seconds: int, connections: int, tmp: Path) -> dict[str, Any]:
    script = tmp / f"orders-{uuid.uuid4().hex[:6]}.lua"
    headers = '{["Content-Type"]="application/json", ["Authorization"]="Bearer ' + token + '"}'
    script.write_text(f'run = "{uuid.uuid4().hex[:8]}"\nheaders = {headers}\n{_WRK_SCRIPT}')
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), base],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "req_s": round(rps, 1),
        "p50_ms": _latency(out, "50%"),
        "p99_ms": _latency(out, "99%"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def _latency(out: str, pct: str) -> float:
    m = re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if m is None:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 3)


def _floor(tmp: Path, seconds: int, connections: int) -> dict[str, Any]:
    port = free_port()
    app = tmp / "floor_app.py"
    app.write_text(_FLOOR_APP)
    proc = subprocess.Popen([PY, str(app), str(port)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        _wrk(f"http://127.0.0.1:{port}", "x", 2, connections, tmp)  # warm-up
        return _wrk(f"http://127.0.0.1:{port}", "x", seconds, connections, tmp)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _propbot(tmp: Path, seconds: int, connections: int) -> dict[str, Any]:
    data = tmp / "propbot"
    data.mkdir()
    config = yaml.safe_load((ROOT / "configs" / "config.paper.yaml").read_text())
    config["risk"] = {**config.get("risk", {}), "max_open_orders": 1_000_000, "max_orders_per_minute": 100_000_000,
                      "max_order_notional": "1000000000", "max_order_qty": "1000"}  # fmt: skip
    config.setdefault("paper", {})["price_interval_s"] = 0
    cfg = tmp / "config.paper.yaml"
    cfg.write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(PY).parent / "propbot"), "serve", "--profile", "paper", "--config", str(cfg), "--data-dir", str(data),
         "--port", str(port)],
        cwd=tmp, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", proc)
        token = next(
            ln.split()[2] for ln in (data / "tokens.txt").read_text().splitlines() if ln.startswith("trader")
        )
        _wrk(base, token, 2, connections, tmp)  # warm-up
        result = _wrk(base, token, seconds, connections, tmp)
        rows = httpx.get(
            f"{base}/api/journal/verify", headers={"Authorization": f"Bearer {_admin(data)}"}, timeout=120
        )
        result["journal_verify"] = (
            rows.json().get("ok", False) if rows.status_code == 200 else rows.status_code
        )
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _admin(data: Path) -> str:
    return next(
        ln.split()[2] for ln in (data / "tokens.txt").read_text().splitlines() if ln.startswith("admin")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk): skipped")
        return 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        before = _floor(tmp, args.seconds, args.connections)
        ours = _propbot(tmp, args.seconds, args.connections)
        after = _floor(tmp, args.seconds, args.connections)
    floor_rps = (before["req_s"] + after["req_s"]) / 2
    ratio = ours["req_s"] / floor_rps
    rows = [
        {"path": "bare FastAPI + pydantic (floor, before)", **before},
        {"path": "propbot serve paper, durable SQLite", **ours, "ratio": round(ratio, 3)},
        {"path": "bare FastAPI + pydantic (floor, after)", **after},
    ]
    table(f"POST /api/live/order, wrk -c{args.connections}, {args.seconds}s", rows)
    ok = ratio >= TARGET_RATIO and ours["p99_ms"] < TARGET_P99_MS and ours["non_2xx"] == 0
    print(f"ratio {ratio:.3f} (target ≥ {TARGET_RATIO}), p99 {ours['p99_ms']} ms (target < {TARGET_P99_MS}), "
          f"non-2xx {ours['non_2xx']}: {'MET' if ok else 'NOT MET'}")  # fmt: skip
    save("api", {"rows": rows, "ratio": ratio, "targets_met": ok, "connections": args.connections})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
