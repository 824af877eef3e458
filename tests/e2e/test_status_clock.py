"""GET /api/status shows the Binance client's own ServerClock (offset used for signing, RTT, syncs) inside
the clock_skew component, beside the preflight's measured skew; the paper venue has no such clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.server import ApiServer, simulator_and_api
from tests.waiting import eventually


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, ApiServer]]:
    with simulator_and_api(tmp_path_factory.mktemp("status-clock")) as pair:
        yield pair


def clock_skew(api: ApiServer) -> dict[str, Any]:
    r = api.client("viewer").get("/api/status")
    assert r.status_code == 200, r.text
    return r.json()["components"]["clock_skew"]  # type: ignore[no-any-return]


def test_clock_skew_detail_carries_the_server_clock(stack: tuple[Any, ApiServer]) -> None:
    _, api = stack
    component = clock_skew(api)
    assert component["status"] == "OK"
    detail = component["detail"]
    assert abs(detail["clock_skew_ms"]) < 250  # the preflight's own measurement stays
    clock = detail["server_clock"]
    assert set(clock) == {"level", "offset_ms", "rtt_ms", "synced", "sync_count", "last_error"}
    assert clock["level"] == "OK"
    assert clock["synced"] is True
    assert clock["sync_count"] >= 1
    assert clock["rtt_ms"] is not None
    assert clock["rtt_ms"] >= 0
    assert abs(clock["offset_ms"]) < 250
    assert clock["last_error"] is None


def test_server_clock_follows_a_venue_clock_jump(stack: tuple[Any, ApiServer]) -> None:
    sim, api = stack
    before = clock_skew(api)["detail"]["server_clock"]["sync_count"]
    httpx.post(f"{sim.base_url}/_sim/faults", json={"clock_skew_ms": 1000}).raise_for_status()
    try:
        # measured by the preflight monitor in the background; the status read only reports it
        component = eventually(lambda: (c := clock_skew(api))["status"] == "WARN" and c)  # over 250 ms
        clock = component["detail"]["server_clock"]
        assert 750 < clock["offset_ms"] < 1250  # the resynced offset the client now signs with
        assert clock["level"] == "WARN"  # over ServerClock's own 500 ms warning line
        assert clock["sync_count"] > before
    finally:
        httpx.delete(f"{sim.base_url}/_sim/faults").raise_for_status()
    eventually(lambda: abs(clock_skew(api)["detail"]["server_clock"]["offset_ms"]) < 250)


def test_paper_status_has_no_server_clock(viewer: httpx.Client) -> None:
    component = viewer.get("/api/status").json()["components"]["clock_skew"]
    assert component["status"] == "OK"
    assert "server_clock" not in component["detail"]
