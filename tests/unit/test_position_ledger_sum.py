"""PositionLedger keeps held(asset) as a running sum per asset: after any sequence of fills heard,
pushed snapshots, deltas and REST reads it equals the definition, the last snapshot plus sign × (heard −
baseline) summed over the asset's entries."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.guardrails.position import PositionLedger
from engine.types import Balance, BalancePush

D = Decimal
ASSETS = ("BTC", "ETH")
CIDS = ("a", "b", "c", "d")

heard = st.tuples(st.just("heard"), st.sampled_from(CIDS), st.sampled_from(ASSETS), st.sampled_from((1, -1)),
                  st.integers(0, 50), st.booleans())  # fmt: skip
push = st.tuples(st.just("push"), st.sampled_from(ASSETS), st.integers(0, 100), st.integers(0, 20))
delta = st.tuples(st.just("delta"), st.sampled_from(ASSETS), st.integers(-5, 5), st.integers(0, 20))
read = st.tuples(st.just("read"), st.sampled_from(ASSETS), st.integers(0, 100), st.integers(0, 20))
again = st.tuples(st.just("again"), st.sampled_from(CIDS), st.integers(0, 50), st.booleans())
finish = st.tuples(st.just("finish"), st.sampled_from(CIDS))


def defined(ledger: PositionLedger, asset: str) -> Decimal:
    entries = [e for e in ledger._orders.values() if e.asset == asset]
    return ledger.balances.get(asset, D(0)) + sum((e.sign * (e.heard - e.baseline) for e in entries), D(0))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(heard, push, delta, read, again, finish), max_size=40))
def test_held_is_the_definition_after_any_sequence(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    ledger = PositionLedger()
    open_ids = set(CIDS)
    covered = ledger.begin_read()
    for step in steps:
        match step:
            case ("heard", cid, asset, sign, qty, streamed):
                entry = ledger._orders.get(cid)
                if entry is None or (entry.asset, entry.sign) == (asset, sign):  # an order keeps its pair
                    ledger.heard(cid, asset, sign, D(qty), streamed=streamed)
            case ("again", cid, qty, streamed):
                ledger.heard_again(cid, D(qty), streamed=streamed)
            case ("push", asset, qty, time_ms):
                ledger.pushed(BalancePush("position", time_ms, (Balance(asset, D(qty), D(0)),)), open_ids)
            case ("delta", asset, qty, time_ms):
                ledger.pushed(BalancePush("delta", time_ms, asset=asset, delta=D(qty)), open_ids)
            case ("read", asset, qty, time_ms):
                ledger.read({asset: D(qty)}, time_ms, covered, open_ids)
                covered = ledger.begin_read()
            case ("finish", cid):
                open_ids.discard(cid)
        for asset in ASSETS:
            assert ledger.held(asset) == defined(ledger, asset)
