"""docs/walkthrough.md works as written: every `sh` block, in order, in one bash, on a fresh data dir
and free loopback ports; the answers it prints are the ones the page promises; nothing is left running."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "walkthrough.md"
BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)
# What the page's comments promise, in the order the blocks print it
EXPECTED = [
    "paper",
    "propbot testnet: safe_mode=on",
    "OK",
    "OK",
    "test TESTED",
    "propbot testnet: safe_mode=OFF",
    "TESTNET test",
    "PENDING",
    "approving request apr-",
    "APPROVED bob",
    "ARMED bob",
    "LIVE live",
    "live ACKED",
    "pb-walk-live-1",
    "CANCELLED",
    "TESTNET",
    "create preflight send ack request_cancel cancelled",
    "request approve use alice bob alice",
    "open arm go_live disarm",
    "True",
    "rows",
]


def sh_blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(pids: list[int]) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(sys.platform == "win32", reason="the walkthrough is a bash session")
def test_the_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    blocks = sh_blocks(PAGE.read_text())
    assert len(blocks) >= 10
    data = tmp_path / "walk"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "NO_COLOR": "1",
           "W": str(data), "SIM_PORT": str(free_port()), "API_PORT": str(free_port())}  # fmt: skip
    script = "set -euo pipefail\n" + "\n".join(blocks)
    proc = subprocess.Popen(
        ["bash", "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=240)
    finally:
        # Whatever the page started and did not stop (a failed block): its pid files name it
        started = [int(p.read_text()) for p in data.glob("*.pid")] if data.exists() else []
        leftover = [pid for pid in started if alive(pid)]
        stop(leftover)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(data.glob("*.log")))
    assert proc.returncode == 0, out + logs
    assert leftover == [], f"the walkthrough left {leftover} running"
    lines = out.splitlines()
    at = 0
    for want in EXPECTED:
        found = next((i for i in range(at, len(lines)) if want in lines[i]), None)
        assert found is not None, f"{want!r} not printed after line {at}:\n{out}"
        at = found + 1
    assert sorted(p.name for p in data.glob("*.pid")) == ["paper.pid", "serve.pid", "sim.pid"]
