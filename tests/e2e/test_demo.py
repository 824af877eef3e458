"""`propbot demo` walks the whole story and exits 0, leaving nothing running: no port it printed still
listens, no process of its own process group survives it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROPBOT = Path(sys.executable).parent / "propbot"
KEY_LINES = [
    "safe_mode=false set explicitly by the demo",
    "status OK",
    "canTrade True",
    "mode test, state TESTED",
    "approval apr-",  # the request's journal row
    "request APPROVED by bob",
    "session ARMED, approval by bob",
    "session LIVE, order mode live",
    "mode live, state FILLED",
    "fill BUY",
    "fill SELL",
    "BTC/USDT: quantity",
    "realized P&L",
    "cancelled: state CANCELLED",
    "session HOLD: demo kill switch",
    "pb-demo-rest-2: CANCELLED",
    "409 session_hold",
    "session TESTNET, order mode test",
    "journal OK:",
    "checkpoints OK:",
    "nothing is left listening",
]


def in_group(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid` (the demo ran as its own group's leader)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_demo_runs_the_story_and_leaves_nothing_running(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    proc = subprocess.Popen(
        [str(PROPBOT), "demo", "--data-dir", str(data)], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    at = 0
    for want in KEY_LINES:
        found = out.find(want, at)
        assert found >= 0, f"{want!r} not printed after offset {at}:\n{out}"
        at = found + len(want)
    ports = [int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", out)]
    assert len(set(ports)) == 2
    for port in set(ports):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"
    assert in_group(proc.pid) == []
    # The kept data dir holds a journal the CLI verifies again, approvals re-checked
    again = subprocess.run(
        [str(PROPBOT), "journal", "verify", "--config", str(data / "config.testnet.yaml"), "--data-dir", str(data),
         "--check-approvals"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr


def test_demo_refuses_a_data_dir_in_use(tmp_path: Path) -> None:
    (tmp_path / "journal.db").write_text("")
    proc = subprocess.run(
        [str(PROPBOT), "demo", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "is not empty" in proc.stderr
