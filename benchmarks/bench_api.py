"""Durable orders through the API against a bare endpoint on the same stack, in one run.

Run: .venv/bin/python benchmarks/bench_api.py [--seconds 10] [--connections 32] [--with-page]

- floor: a bare FastAPI app with one POST endpoint that validates the same JSON body with a pydantic
  model and answers it, served by api.serving (the same uvicorn configuration as `propbot serve`);
- propbot: a real `propbot serve --profile paper` process (durable SQLite journal, WAL, synchronous=FULL)
  with its risk caps raised by a config file for the run; every request is a MARKET order, BUY and SELL
  alternating, each with a new client order id, so each one is decided, journaled (audit row, create,
  preflight, send, fill: two group commits) and filled on the paper venue before it is answered.
- durable floor: the bare endpoint plus the journal's I/O and nothing else: each order waits for two
  group commits to a raw sqlite3 WAL database with synchronous=FULL (4 rows of 400 bytes before the
  answer can exist, as propbot's write-ahead group, then 1 row, as its fill), committed by one writer
  thread that takes everything queued into one transaction (executemany, COMMIT). It decides, hashes
  and matches nothing: what any API that answers an order only after two durable commits costs here.
Each is loaded by `wrk` (Debian package wrk) at the same connection count: floor, durable floor,
propbot, floor again (the ratio uses the mean of the two floor runs, which brackets machine drift).
Targets: propbot req/s ≥ 0.5 × floor, p99 < 50 ms, 0 non-2xx (the issue's); propbot / durable floor is
printed beside it. Results: benchmarks/results/api.json.

--with-page: the propbot measurement again on a second fresh server with one status page open all the
time (benchmarks/page_poller.py sends the page's calls at the page's cadence, as the admin, so the journal
panel is polled too), and both numbers printed; before its load it also measures the page's own cost on
an idle server: requests/s and the server's CPU (its /proc utime+stime) over 5 s without and 5 s with it.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from common import ROOT, free_port, save, table, wait_http
from page_poller import PagePoller

TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
PY = sys.executable

_FLOOR_APP = textwrap.dedent(
    """
    import asyncio, collections, sqlite3, sys
    from concurrent.futures import ThreadPoolExecutor
    from decimal import Decimal
    from typing import Literal
    from fastapi import FastAPI
    from pydantic import BaseModel, ConfigDict
    from api.serving import serve

    class GroupCommit:
        \"\"\"The durable floor's journal: everything queued goes into one transaction on one thread.\"\"\"

        def __init__(self, path: str) -> None:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("CREATE TABLE IF NOT EXISTS j (seq INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
            self.queue = collections.deque()
            self.wake = asyncio.Event()
            self.thread = ThreadPoolExecutor(1)
            self.task = None

        async def append(self, n: int) -> None:
            if self.task is None:
                self.task = asyncio.get_running_loop().create_task(self.run())
            done = asyncio.get_running_loop().create_future()
            self.queue.append((n, done))
            self.wake.set()
            await done

        def write(self, rows: int) -> None:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO j (payload) VALUES (?)", [("x" * 400,)] * rows)
            self.db.execute("COMMIT")

        async def run(self) -> None:
            loop = asyncio.get_running_loop()
            while True:
                if not self.queue:
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                batch = [self.queue.popleft() for _ in range(len(self.queue))]
                await loop.run_in_executor(self.thread, self.write, sum(n for n, _ in batch))
                for _, done in batch:
                    done.set_result(None)

    # argv: port, then "-" for the bare floor or a database path for the durable floor
    writer = GroupCommit(sys.argv[2]) if sys.argv[2] != "-" else None

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
        if writer is not None:
            await writer.append(4)  # the write-ahead group
            await writer.append(1)  # the venue's answer
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


def wrk_orders(base: str, token: str, seconds: int, connections: int, tmp: Path) -> dict[str, Any]:
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


def _floor(tmp: Path, seconds: int, connections: int, *, durable: bool = False) -> dict[str, Any]:
    port = free_port()
    app = tmp / "floor_app.py"
    app.write_text(_FLOOR_APP)
    db = str(tmp / f"floor-{uuid.uuid4().hex[:6]}.db") if durable else "-"
    proc = subprocess.Popen(
        [PY, str(app), str(port), db], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        wrk_orders(f"http://127.0.0.1:{port}", "x", 2, connections, tmp)  # warm-up
        return wrk_orders(f"http://127.0.0.1:{port}", "x", seconds, connections, tmp)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _idle_cost(pid: int, base: str, token: str, seconds: float = 5.0) -> dict[str, Any]:
    """The server's CPU over `seconds` idle, then over `seconds` with one page polling it."""
    import time

    before = _cpu_s(pid)
    time.sleep(seconds)
    idle = (_cpu_s(pid) - before) / seconds
    with PagePoller(base, token) as page:
        before = _cpu_s(pid)
        time.sleep(seconds)
        busy = (_cpu_s(pid) - before) / seconds
    return {"idle_cpu_pct": round(idle * 100, 2), "with_page_cpu_pct": round(busy * 100, 2),
            "page_req_s": round(page.req_s, 2), "page_errors": page.errors}  # fmt: skip


@contextmanager
def paper_server(
    data: Path, journal_url: str | None = None, command: list[str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real `propbot serve --profile paper` on `data` with its risk caps raised for load, optionally on
    another journal (`journal_url`), or run by `command` in place of `propbot` (a wrapper that takes
    the same arguments); (process, base URL), stopped on exit."""
    data.mkdir()
    config = yaml.safe_load((ROOT / "configs" / "config.paper.yaml").read_text())
    config["risk"] = {**config.get("risk", {}), "max_open_orders": 1_000_000, "max_orders_per_minute": 100_000_000,
                      "max_order_notional": "1000000000", "max_order_qty": "1000"}  # fmt: skip
    config.setdefault("paper", {})["price_interval_s"] = 0
    if journal_url is not None:
        config["journal"] = {"url": journal_url}
    cfg = data.parent / f"config.{data.name}.yaml"
    cfg.write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [*(command or [str(Path(PY).parent / "propbot")]), "serve", "--profile", "paper", "--config", str(cfg), "--data-dir", str(data),
         "--port", str(port)],
        cwd=data.parent, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", proc)
        yield proc, base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def token_of(data: Path, role: str) -> str:
    """The bearer token of `role` that a first paper start wrote to tokens.txt."""
    lines = (data / "tokens.txt").read_text().splitlines()
    return next(ln.split()[2] for ln in lines if ln.startswith(role))


def _propbot(tmp: Path, seconds: int, connections: int, *, page: bool = False) -> dict[str, Any]:
    data = tmp / ("propbot-page" if page else "propbot")
    with paper_server(data) as (proc, base):
        token = token_of(data, "trader")
        wrk_orders(base, token, 2, connections, tmp)  # warm-up
        if page:
            idle = _idle_cost(proc.pid, base, _admin(data))
            with PagePoller(base, _admin(data)) as poller:
                result = wrk_orders(base, token, seconds, connections, tmp)
            result.update(idle, page_req_s_under_load=round(poller.req_s, 2), page_errors=poller.errors)
        else:
            result = wrk_orders(base, token, seconds, connections, tmp)
        rows = httpx.get(
            f"{base}/api/journal/verify", headers={"Authorization": f"Bearer {_admin(data)}"}, timeout=120
        )
        result["journal_verify"] = (
            rows.json().get("ok", False) if rows.status_code == 200 else rows.status_code
        )
        return result


def _admin(data: Path) -> str:
    return token_of(data, "admin")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--with-page", action="store_true", help="measure again with one status page open")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk): skipped")
        return 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        before = _floor(tmp, args.seconds, args.connections)
        durable = _floor(tmp, args.seconds, args.connections, durable=True)
        ours = _propbot(tmp, args.seconds, args.connections)
        paged = _propbot(tmp, args.seconds, args.connections, page=True) if args.with_page else None
        after = _floor(tmp, args.seconds, args.connections)
    floor_rps = (before["req_s"] + after["req_s"]) / 2
    ratio = ours["req_s"] / floor_rps
    rows = [
        {"path": "bare FastAPI + pydantic (floor, before)", **before},
        {
            "path": "durable floor: + 2 raw group commits (4+1 rows)",
            **durable,
            "ratio": round(durable["req_s"] / floor_rps, 3),
        },
        {"path": "propbot serve paper, durable SQLite", **ours, "ratio": round(ratio, 3)},
        {"path": "bare FastAPI + pydantic (floor, after)", **after},
    ]
    if paged is not None:
        load_keys = ("req_s", "p50_ms", "p99_ms", "non_2xx", "socket_errors", "journal_verify")
        rows.insert(3, {"path": "propbot serve paper, one status page open",
                        **{k: paged[k] for k in load_keys}, "ratio": round(paged["req_s"] / floor_rps, 3)})  # fmt: skip
    table(f"POST /api/live/order, wrk -c{args.connections}, {args.seconds}s", rows)
    ok = ratio >= TARGET_RATIO and ours["p99_ms"] < TARGET_P99_MS and ours["non_2xx"] == 0
    print(f"ratio {ratio:.3f} (target ≥ {TARGET_RATIO}), p99 {ours['p99_ms']} ms (target < {TARGET_P99_MS}), "
          f"non-2xx {ours['non_2xx']}: {'MET' if ok else 'NOT MET'}")  # fmt: skip
    print(f"propbot / durable floor: {ours['req_s'] / durable['req_s']:.3f}")
    result: dict[str, Any] = {
        "rows": rows,
        "ratio": ratio,
        "ratio_to_durable_floor": ours["req_s"] / durable["req_s"],
        "targets_met": ok,
        "connections": args.connections,
    }
    if paged is not None:
        change = paged["req_s"] / ours["req_s"] - 1
        print(f"one status page open: orders {ours['req_s']} → {paged['req_s']} req/s ({change:+.1%}), "
              f"p99 {ours['p99_ms']} → {paged['p99_ms']} ms; the page sent {paged['page_req_s_under_load']} "
              f"req/s under load ({paged['page_errors']} errors)")  # fmt: skip
        print(f"idle server: {paged['page_req_s']} req/s from the page, server CPU "
              f"{paged['idle_cpu_pct']}% → {paged['with_page_cpu_pct']}% of one core")  # fmt: skip
        result["with_page"] = {**paged, "throughput_change": round(change, 4)}
    save("api", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
