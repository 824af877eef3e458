"""Random place/cancel/set_price sequences: balances never go negative, locks match the open orders, and
free+locked always equals the starting balance plus trade flows minus commission."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal as D
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.venue import DEFAULT_BALANCES, MatchingEngine, VenueError

SYMBOLS = {"BTCUSDT": ("BTC", D("0.01"), D("0.001")), "ETHUSDT": ("ETH", D("0.01"), D("0.01"))}

symbol = st.sampled_from(sorted(SYMBOLS))
side = st.sampled_from(["BUY", "SELL"])
# Mostly affordable sizes, sometimes far beyond the balance
lots = st.one_of(st.integers(1, 1000), st.sampled_from([3000, 20000]))
place_limit = st.tuples(
    st.just("limit"),
    symbol,
    side,
    st.integers(1, 400),
    st.integers(-40, 40),
    st.sampled_from(["GTC", "IOC", "FOK"]),
)
place_market = st.tuples(st.just("market"), symbol, side, lots)
cancel = st.tuples(st.just("cancel"), st.integers(0, 50))
move = st.tuples(st.just("move"), symbol, st.integers(-60, 60))
actions = st.lists(
    st.one_of(place_limit, place_limit, place_market, cancel, move, move), min_size=5, max_size=40
)


def apply(venue: MatchingEngine, action: tuple[Any, ...]) -> None:
    kind = action[0]
    if kind == "limit":
        _, sym, sd, lots, ticks, tif = action
        _, tick, lot = SYMBOLS[sym]
        price = venue.prices[sym] + tick * ticks * 25
        params = {"symbol": sym, "side": sd, "type": "LIMIT", "timeInForce": tif}
        venue.place(params | {"quantity": str(lot * lots), "price": str(price)})
    elif kind == "market":
        _, sym, sd, lots = action
        venue.place({"symbol": sym, "side": sd, "type": "MARKET", "quantity": str(SYMBOLS[sym][2] * lots)})
    elif kind == "cancel":
        open_orders = venue.open_orders()
        if open_orders:
            o = open_orders[action[1] % len(open_orders)]
            venue.cancel(o["symbol"], order_id=o["orderId"])
    else:
        _, sym, ticks = action
        venue.set_price(sym, venue.prices[sym] + SYMBOLS[sym][1] * ticks * 10)


def check_invariants(venue: MatchingEngine) -> None:
    balances = {b["asset"]: (D(b["free"]), D(b["locked"])) for b in venue.account()["balances"]}
    expected = defaultdict(D, {a: D(v) for a, v in DEFAULT_BALANCES.items()})
    for sym, (base, _, _) in SYMBOLS.items():
        for t in venue.my_trades(sym, limit=1000):
            sign = 1 if t["isBuyer"] else -1
            expected[base] += sign * D(t["qty"])
            expected["USDT"] -= sign * D(t["quoteQty"])
            expected[t["commissionAsset"]] -= D(t["commission"])
    locked: defaultdict[str, D] = defaultdict(D)
    for o in venue.open_orders():
        remaining = D(o["origQty"]) - D(o["executedQty"])
        if o["side"] == "BUY":
            locked["USDT"] += remaining * D(o["price"])
        else:
            locked[SYMBOLS[o["symbol"]][0]] += remaining
    for asset, (free, held) in balances.items():
        assert free >= 0, asset
        assert held >= 0, asset
        assert free + held == expected[asset], asset
        assert held == locked[asset], asset


@settings(max_examples=80, deadline=None)
@given(actions)
def test_balances_are_conserved_and_never_negative(steps: list[tuple[Any, ...]]) -> None:
    venue = MatchingEngine(clock_ms=lambda: 1)
    for action in steps:
        code = None
        try:
            apply(venue, action)
        except VenueError as exc:
            code = exc.code
        # Only business rejections are expected from well-formed requests
        assert code in (None, -2010, -1013)
        check_invariants(venue)
    fees = venue.fees_collected()
    paid: defaultdict[str, D] = defaultdict(D)
    for sym in SYMBOLS:
        for t in venue.my_trades(sym, limit=1000):
            paid[t["commissionAsset"]] += D(t["commission"])
    assert fees == {a: v for a, v in paid.items() if v}
