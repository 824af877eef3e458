"""Fixtures: a simulator on loopback (rate limits lifted) and a LIVE `propbot serve` subprocess against it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.simulator.server import SimulatorServer
from tests.crash.harness import ApiProcess, go_live
from tests.e2e.server import SIM_KEY, SIM_SECRET, approver_key

_BIG = 10**9


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    # limits lifted: a burst of live orders (each with its preflight) must not meet a 429
    with SimulatorServer(
        SIM_KEY, SIM_SECRET, weight_limit=_BIG, order_limit_10s=_BIG, order_limit_1d=_BIG
    ) as s:
        yield s


@pytest.fixture
def live_api(tmp_path: Path, sim: SimulatorServer) -> Iterator[ApiProcess]:
    """The API as a subprocess, session LIVE (armed with a second operator's token, safe_mode false)."""
    key, public = approver_key()
    api = ApiProcess(tmp_path / "data", sim.base_url, sim.ws_url, {"approver2": public})
    try:
        api.start()
        go_live(api, key)
        yield api
    finally:
        api.stop()
