"""Fixtures: a simulator on a free loopback port, with a real clock or a test-controlled one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.simulator.server import SimulatorServer
from tests.simulator.helpers import KEY, SECRET, FakeClock, SignedClient


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(
        KEY, SECRET, ws_ping_interval=5, ws_ping_timeout=5, driver_interval_s=0.02
    ) as server:
        yield server


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[SignedClient]:
    c = SignedClient(sim.base_url, sim.state.clock_ms)
    yield c
    c.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_sim(clock: FakeClock) -> Iterator[SimulatorServer]:
    """A simulator whose clock only moves when the test advances it; small limits to reach them quickly."""
    with SimulatorServer(KEY, SECRET, clock_ms=clock, weight_limit=60, order_limit_10s=3) as server:
        yield server


@pytest.fixture
def fake_client(fake_sim: SimulatorServer, clock: FakeClock) -> Iterator[SignedClient]:
    c = SignedClient(fake_sim.base_url, clock)
    yield c
    c.close()
