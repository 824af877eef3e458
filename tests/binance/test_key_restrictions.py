"""The key's restrictions (GET /sapi/v1/account/apiRestrictions, docs/architecture.md): BinanceSpotClient signs
it, BinanceExchange asks only on live and caches the answer, testnet and paper answer None without
sending anything; the simulator serves the endpoint only once switched on (404 by default, as testnet)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from adapters.binance.exchange import BinanceExchange
from adapters.binance.rest import BinanceSpotClient
from adapters.paper.exchange import PaperExchange
from adapters.simulator.restrictions import DEFAULT_RESTRICTIONS
from adapters.simulator.server import SimulatorServer
from engine.errors import ExchangeError, ExchangeRejected, ExchangeUnavailable
from tests.binance.helpers import API_KEY, BASE, SECRET, FakeVenue, error, ok

PATH = "/sapi/v1/account/apiRestrictions"
LIVE_ANSWER = {
    "ipRestrict": True,
    "createTime": 1_700_000_000_000,
    "enableReading": True,
    "enableSpotAndMarginTrading": True,
    "enableWithdrawals": False,
    "enableInternalTransfer": False,
    "permitsUniversalTransfer": False,
    "enableMargin": False,
    "enableFutures": False,
    "enableVanillaOptions": False,
    "enablePortfolioMarginTrading": False,
    "enableFixApiTrade": False,
    "enableFixReadOnly": False,
}


def client_on(venue: FakeVenue, profile: str = "live") -> BinanceSpotClient:
    return BinanceSpotClient(profile, API_KEY, SECRET, BASE, transport=httpx.MockTransport(venue))


def venue_with(answer: Any = None) -> FakeVenue:
    venue = FakeVenue()
    venue.route("GET", PATH, lambda r, p: ok(LIVE_ANSWER if answer is None else answer))
    return venue


# -- BinanceSpotClient.api_restrictions over MockTransport ----------------------------------------


async def test_client_signs_the_request_and_returns_the_json() -> None:
    venue = venue_with()
    client = client_on(venue, "testnet")  # the client itself does not judge the venue
    assert await client.api_restrictions() == LIVE_ANSWER
    req = venue.requests[-1]
    assert (req.method, req.url.path) == ("GET", PATH)
    assert req.headers["X-MBX-APIKEY"] == API_KEY
    sent = dict(parse_qsl(req.url.query.decode()))
    assert set(sent) == {"recvWindow", "timestamp", "signature"}  # FakeVenue verified the HMAC
    await client.aclose()


async def test_sapi_weight_and_429_stay_out_of_the_api_governor() -> None:
    calls = {"n": 0}

    def handler(r: httpx.Request, p: dict[str, str]) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return ok(LIVE_ANSWER, headers={"X-MBX-USED-WEIGHT-1M": "5000"})
        return error(429, -1003, "Too many requests.", headers={"Retry-After": "30"})

    venue = FakeVenue()
    venue.route("GET", PATH, handler)
    client = client_on(venue)
    await client.clock.resync()
    used_before = client.governor.status()["used"]["weight_1M"]
    await client.api_restrictions()
    with pytest.raises(ExchangeUnavailable) as ei:
        await client.api_restrictions()
    assert ei.value.reason == "RATE_LIMIT"
    status = client.governor.status()
    # SAPI counts its own pool: nothing reserved, its headers not learned, its 429 blocks no /api call
    assert status["used"]["weight_1M"] == used_before
    assert status["retry_after_s"] is None
    assert await client.server_time() > 0
    await client.aclose()


async def test_client_refuses_without_a_secret() -> None:
    venue = venue_with()
    client = BinanceSpotClient("live", API_KEY, "", BASE, transport=httpx.MockTransport(venue))
    with pytest.raises(ExchangeRejected) as ei:
        await client.api_restrictions()
    assert ei.value.reason == "PERMISSION_DENIED"
    assert venue.requests == []
    await client.aclose()


# -- BinanceExchange.key_restrictions ---------------------------------------------------------------


async def test_live_asks_once_and_caches_for_the_ttl() -> None:
    venue = venue_with()
    ex = BinanceExchange(client_on(venue, "live"), poll_interval_s=0)
    assert ex.has_sapi is True
    first = await ex.key_restrictions()
    assert first == LIVE_ANSWER
    assert first is not None
    first["enableWithdrawals"] = True  # a caller's copy: the cache is not touched
    assert await ex.key_restrictions() == LIVE_ANSWER
    assert venue.count("GET", PATH) == 1
    ex.restrictions_ttl_s = 0.0  # expired: the next call asks again
    await ex.key_restrictions()
    assert venue.count("GET", PATH) == 2
    await ex.close()


async def test_concurrent_callers_share_one_request() -> None:
    gate = asyncio.Event()

    async def slow(r: httpx.Request, p: dict[str, str]) -> httpx.Response:
        await gate.wait()
        return ok(LIVE_ANSWER)

    venue = FakeVenue()
    venue.route("GET", PATH, slow)
    ex = BinanceExchange(client_on(venue, "live"), poll_interval_s=0)
    tasks = [asyncio.create_task(ex.key_restrictions()) for _ in range(3)]
    await asyncio.sleep(0.05)
    gate.set()
    assert await asyncio.gather(*tasks) == [LIVE_ANSWER] * 3
    assert venue.count("GET", PATH) == 1
    await ex.close()


async def test_a_failure_is_not_cached() -> None:
    answers = [error(401, -2015, "Invalid API-key, IP, or permissions for action."), ok(LIVE_ANSWER)]
    venue = FakeVenue()
    venue.route("GET", PATH, lambda r, p: answers.pop(0))
    ex = BinanceExchange(client_on(venue, "live"), poll_interval_s=0)
    with pytest.raises(ExchangeRejected) as ei:
        await ex.key_restrictions()
    assert ei.value.reason == "PERMISSION_DENIED"
    assert await ex.key_restrictions() == LIVE_ANSWER
    assert venue.count("GET", PATH) == 2
    await ex.close()


@pytest.mark.parametrize("profile", ["testnet", "simulator", "bench"])
async def test_venues_without_sapi_answer_none_and_send_nothing(profile: str) -> None:
    venue = venue_with()
    ex = BinanceExchange(client_on(venue, profile), poll_interval_s=0)
    assert ex.has_sapi is False
    assert await ex.key_restrictions() is None
    assert venue.requests == []  # not even a clock sync
    await ex.close()


async def test_paper_has_no_key_to_restrict() -> None:
    ex = PaperExchange()
    assert await ex.key_restrictions() is None
    await ex.close()


# -- the simulator's optional endpoint over real sockets ------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def admin(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url) as client:
        yield client
        client.delete("/_sim/api_restrictions").raise_for_status()


@pytest.fixture
async def live(sim: SimulatorServer) -> AsyncIterator[BinanceExchange]:
    client = BinanceSpotClient("live", sim.api_key, sim.api_secret, {"rest": sim.base_url})
    ex = BinanceExchange(client, poll_interval_s=0, restrictions_ttl_s=0)
    yield ex
    await ex.close()


async def test_simulator_is_testnet_like_by_default(
    sim: SimulatorServer, admin: httpx.Client, live: BinanceExchange
) -> None:
    assert admin.get(PATH).status_code == 404
    with pytest.raises(ExchangeError) as ei:
        await live.key_restrictions()  # asked as if live: the path does not exist
    assert ei.value.http_status == 404
    testnet = BinanceExchange(
        BinanceSpotClient("testnet", sim.api_key, sim.api_secret, {"rest": sim.base_url}), poll_interval_s=0
    )
    requests = admin.get("/_sim/state").json()["requests"]
    assert await testnet.key_restrictions() is None
    assert admin.get("/_sim/state").json()["requests"] == requests  # the testnet path sent nothing
    await testnet.close()


async def test_simulator_serves_the_live_path_once_switched_on(
    sim: SimulatorServer, admin: httpx.Client, live: BinanceExchange
) -> None:
    r = admin.post("/_sim/api_restrictions", json={"enableWithdrawals": True, "ipRestrict": False})
    assert r.status_code == 200
    got = await live.key_restrictions()
    assert got == r.json()["api_restrictions"]
    assert got is not None
    assert set(got) == {"createTime", *DEFAULT_RESTRICTIONS}
    assert (got["enableWithdrawals"], got["ipRestrict"], got["enableSpotAndMarginTrading"]) == (
        True,
        False,
        True,
    )
    assert abs(got["createTime"] - sim.state.now_ms()) < 60_000
    assert admin.get("/_sim/state").json()["api_restrictions"] == got

    # USER_DATA: unsigned or wrongly keyed requests are refused like any signed endpoint
    assert admin.get(PATH).json()["code"] == -2015  # no key
    unsigned = admin.get(PATH, headers={"X-MBX-APIKEY": sim.api_key})
    assert (unsigned.status_code, unsigned.json()["code"]) == (400, -1102)  # timestamp/signature missing
    stranger = BinanceSpotClient("live", "other-key", sim.api_secret, {"rest": sim.base_url})
    with pytest.raises(ExchangeRejected) as ei:
        await stranger.api_restrictions()
    assert ei.value.code == -2015
    await stranger.aclose()

    assert admin.delete("/_sim/api_restrictions").status_code == 200
    assert admin.get(PATH).status_code == 404


@pytest.mark.parametrize(
    "body", [{"enableWithdrawal": False}, {"ipRestrict": "yes"}, {"createTime": -1}, ["ipRestrict"]]
)
def test_simulator_refuses_a_bad_restrictions_body(
    sim: SimulatorServer, admin: httpx.Client, body: Any
) -> None:
    r = admin.post("/_sim/api_restrictions", json=body)
    assert r.status_code == 400
    assert "error" in r.json()
    assert sim.state.api_restrictions is None  # nothing switched on


async def test_simulator_can_start_with_the_endpoint_on() -> None:
    with SimulatorServer(api_restrictions={"enableSpotAndMarginTrading": False}) as sim:
        client = BinanceSpotClient("live", sim.api_key, sim.api_secret, {"rest": sim.base_url})
        ex = BinanceExchange(client, poll_interval_s=0)
        got = await ex.key_restrictions()
        await ex.close()
    assert got is not None
    assert got["enableSpotAndMarginTrading"] is False
    assert got["ipRestrict"] is True
