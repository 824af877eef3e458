"""The simulator calls the engine from several threads; one lock keeps ids and balances consistent."""

from __future__ import annotations

import threading
from decimal import Decimal as D

from adapters.venue import MatchingEngine
from tests.venue.conftest import limit


def test_parallel_places_and_cancels_stay_consistent() -> None:
    venue = MatchingEngine(balances={"USDT": D(10**6), "BTC": D(10)})
    ids: list[int] = []
    ids_lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(60):
            side, price = ("BUY", "60000") if (n + i) % 2 else ("SELL", "70000")
            r = venue.place(limit(side, "0.001", price))
            with ids_lock:
                ids.append(r["orderId"])
            if i % 3 == 0:
                venue.cancel("BTCUSDT", order_id=r["orderId"])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ids) == list(range(1, 241))
    open_orders = venue.open_orders()
    assert len(open_orders) == 240 - 4 * 20
    buys = sum(1 for o in open_orders if o["side"] == "BUY")
    acct = {b["asset"]: b for b in venue.account()["balances"]}
    assert D(acct["USDT"]["locked"]) == buys * D("60")
    assert D(acct["BTC"]["locked"]) == (len(open_orders) - buys) * D("0.001")
