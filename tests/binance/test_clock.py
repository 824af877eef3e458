"""ServerClock: offset at the RTT midpoint of the fastest sample; through the client with MockTransport."""

from __future__ import annotations

import httpx
import pytest

from adapters.binance.clock import ClockSample, ServerClock
from adapters.binance.rest import BinanceSpotClient
from tests.binance.helpers import API_KEY, BASE, SECRET, FakeVenue


class ScriptedServer:
    """Each fetch advances the fake local clock by the scripted RTT and answers serverTime = true time
    of the midpoint (local + true_offset)."""

    def __init__(
        self, local: list[float], true_offset_ms: float, rtts_ms: list[float], asym: list[float]
    ) -> None:
        self.local, self.true_offset, self.rtts, self.asym = local, true_offset_ms, rtts_ms, asym
        self.calls = 0

    async def __call__(self) -> int:
        rtt, a = self.rtts[self.calls], self.asym[self.calls]
        self.calls += 1
        # the server reads its clock `a`·rtt after we sent (0.5 = exact midpoint)
        server = self.local[0] + a * rtt + self.true_offset
        self.local[0] += rtt
        return int(server)


async def test_offset_from_the_smallest_rtt_sample() -> None:
    local = [1_700_000_000_000.0]
    # the slow samples are lopsided (server answered late in the window) and would mislead
    server = ScriptedServer(local, 2500.0, rtts_ms=[400, 40, 900, 10, 300], asym=[0.9, 0.6, 0.1, 0.5, 0.8])
    clock = ServerClock(server, local_ms=lambda: local[0], samples=5)
    best = await clock.resync()
    assert server.calls == 5
    assert best.rtt_ms == 10
    assert clock.offset_ms == pytest.approx(2500.0, abs=1.0)
    assert clock.rtt_ms == 10
    assert clock.timestamp_ms() == pytest.approx(local[0] + 2500, abs=1)
    st = clock.status()
    assert st["synced"]
    assert st["level"] == "WARN"


def test_sample_math() -> None:
    s = ClockSample(server_time_ms=1_000_050, sent_ms=1_000_000.0, received_ms=1_000_020.0)
    assert s.rtt_ms == 20
    assert s.offset_ms == 40
    assert ServerClock.best([s, ClockSample(1, 0.0, 5.0), ClockSample(1, 0.0, 50.0)]).rtt_ms == 5


async def test_unsynced_clock_is_warn_and_failed_resync_keeps_offset() -> None:
    async def broken() -> int:
        raise RuntimeError("down")

    clock = ServerClock(broken, samples=2)
    assert clock.status()["level"] == "WARN"
    assert clock.offset_ms == 0
    with pytest.raises(RuntimeError):
        await clock.resync()
    assert clock.status()["last_error"] == "RuntimeError: down"
    with pytest.raises(ValueError):
        ServerClock(samples=0)


async def test_client_syncs_from_api_v3_time_over_mock_transport() -> None:
    local = [1_700_000_000_000.0]
    venue = FakeVenue(server_time_ms=lambda: int(local[0]) + 1234)
    venue.route("GET", "/api/v3/account", lambda r, p: httpx.Response(200, json={"ts": int(p["timestamp"])}))
    clock = ServerClock(local_ms=lambda: local[0], samples=3)
    client = BinanceSpotClient(
        "testnet", API_KEY, SECRET, BASE, transport=httpx.MockTransport(venue), clock=clock
    )
    data = await client.account()
    assert venue.count("GET", "/api/v3/time") == 3  # lazy sync before the first signed request
    assert clock.offset_ms == pytest.approx(1234, abs=1)
    assert data["ts"] == int(local[0]) + 1234
    await client.account()
    assert venue.count("GET", "/api/v3/time") == 3  # no resync without reason
    await client.aclose()
