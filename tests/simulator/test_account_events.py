"""The simulator's account events on the user data stream, as user-data-stream.md describes them: one
outboundAccountPosition per execution that moved funds (with the balances that execution left, and only
the assets it changed), balanceUpdate for an admin deposit or withdrawal, listStatus when an OTO starts
and when every leg is done."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from adapters.simulator.server import SimulatorServer
from tests.simulator.helpers import SignedClient
from tests.simulator.test_ws_api import connect, events, subscribe, url

LIMIT = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.003",
         "price": "64000.00"}  # fmt: skip


def kinds(msgs: list[Any]) -> list[str]:
    return [m["event"]["e"] for m in msgs]


async def test_one_position_event_per_fill_with_the_balances_it_left(
    sim: SimulatorServer, client: SignedClient
) -> None:
    sim.state.engine.level_qty["BTCUSDT"] = Decimal("0.001")
    async with connect(url(sim)) as ws:
        await subscribe(sim, ws)
        client.signed("POST", "/api/v3/order", {**LIMIT, "newClientOrderId": "acct-1"})
        placed = await events(ws, 2)
        assert kinds(placed) == ["executionReport", "outboundAccountPosition"]
        assert [b["a"] for b in placed[1]["event"]["B"]] == ["USDT"]  # the lock moved USDT only
        # one print fills 0.001; three prints in one call: three reports, each followed by its position
        sim.state.engine.set_price("BTCUSDT", Decimal("64000"))
        sim.state.engine.set_price("BTCUSDT", Decimal("64000"))
        sim.state.engine.set_price("BTCUSDT", Decimal("64000"))
        got = await events(ws, 6)
        assert kinds(got) == ["executionReport", "outboundAccountPosition"] * 3
        btc = [Decimal(next(b["f"] for b in m["event"]["B"] if b["a"] == "BTC")) for m in got[1::2]]
        assert btc[0] < btc[1] < btc[2]  # each event carries the balance after its own fill
        final = {b["asset"]: b for b in client.signed("GET", "/api/v3/account").json()["balances"]}
        assert btc[2] == Decimal(final["BTC"]["free"])


async def test_a_deposit_and_a_withdrawal_are_balance_updates(
    sim: SimulatorServer, client: SignedClient
) -> None:
    before = Decimal(
        next(
            b["free"]
            for b in client.signed("GET", "/api/v3/account").json()["balances"]
            if b["asset"] == "BNB"
        )
    )
    async with connect(url(sim)) as ws:
        await subscribe(sim, ws)
        r = httpx.post(f"{sim.base_url}/_sim/balance", json={"asset": "BNB", "delta": "2.5"})
        assert r.status_code == 200, r.text
        update, position = (m["event"] for m in await events(ws, 2))
        assert (update["e"], update["a"], Decimal(update["d"]), update["T"]) == (
            "balanceUpdate", "BNB", Decimal("2.5"), r.json()["time"]
        )  # fmt: skip
        assert position["e"] == "outboundAccountPosition"
        assert [(b["a"], Decimal(b["f"])) for b in position["B"]] == [("BNB", before + Decimal("2.5"))]
        httpx.post(f"{sim.base_url}/_sim/balance", json={"asset": "BNB", "delta": "-1"}).raise_for_status()
        update = (await events(ws, 1, "balanceUpdate"))[0]["event"]
        assert Decimal(update["d"]) == Decimal(-1)
    too_much = httpx.post(f"{sim.base_url}/_sim/balance", json={"asset": "BNB", "delta": "-1000000"})
    assert too_much.status_code == 400


async def test_an_oto_reports_list_status_at_start_and_when_done(
    sim: SimulatorServer, client: SignedClient
) -> None:
    working = {**LIMIT, "quantity": "0.001", "newClientOrderId": "ls-w"}
    pending = {**LIMIT, "side": "SELL", "quantity": "0.001", "price": "66000.00", "newClientOrderId": "ls-p"}
    async with connect(url(sim)) as ws:
        await subscribe(sim, ws)
        answer = httpx.post(f"{sim.base_url}/_sim/oto", json={"working": working, "pending": pending}).json()
        started = (await events(ws, 1, "listStatus"))[0]["event"]
        assert (started["g"], started["c"], started["l"], started["L"], started["C"]) == (
            answer["orderListId"], "OTO", "EXEC_STARTED", "EXECUTING", answer["listClientOrderId"]
        )  # fmt: skip
        assert [o["c"] for o in started["O"]] == ["ls-w", "ls-p"]
        assert set(started) == {"e", "E", "s", "g", "c", "l", "L", "r", "C", "T", "O"}
        client.signed("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "ls-p"})
        done = (await events(ws, 1, "listStatus"))[0]["event"]
        assert (done["g"], done["l"], done["L"]) == (answer["orderListId"], "ALL_DONE", "ALL_DONE")
