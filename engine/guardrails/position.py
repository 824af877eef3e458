"""What we hold of each asset for `risk.max_position`, without polling the account.

held(asset) = the latest balance snapshot (free + locked) + what our own orders filled since it.

Snapshots come pushed (Binance `outboundAccountPosition`: absolute balances of the assets an event
changed; `balanceUpdate`: a deposit's or withdrawal's delta; user-data-stream.md) or from a REST account
read. "Since it" is decided per order by quantities heard, not applied, so a fill whose journal commit is
still in flight when a snapshot arrives is neither lost nor counted twice:

- `heard` is the most filled we have heard of an order from anywhere (a pushed report, a REST answer, the
  journal's applied fills);
- `streamed` is the most filled the user data stream itself reported. Binance sends an order's
  executionReport before the outboundAccountPosition of the same execution, on the same stream, so a
  pushed snapshot covers exactly what the stream reported before it: its baseline is `streamed`;
- a REST snapshot covers at least what was heard before its request left: its baseline is `heard` as
  it was then (fills heard meanwhile count on top, erring towards refusing a BUY, never towards
  allowing one).

A snapshot older than the one in force for an asset (by the venue's own update time) is ignored.

`held` is asked for by every BUY's position check, and entries of finished orders stay until a snapshot
covers them (on a venue that pushes none, such as paper, that is never), so the sum over entries is kept
per asset as entries change instead of being recomputed from all of them per order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.types import BalancePush

_ZERO = Decimal(0)


@dataclass(slots=True)
class _Entry:
    asset: str
    sign: int  # +1 for a BUY (adds to the base asset), -1 for a SELL
    heard: Decimal = _ZERO
    streamed: Decimal = _ZERO
    baseline: Decimal = _ZERO


class PositionLedger:
    def __init__(self) -> None:
        self.balances: dict[str, Decimal] = {}  # asset -> free + locked, as of the last snapshot
        self._as_of: dict[str, int] = {}  # asset -> the venue's update time (ms) of that snapshot
        self._orders: dict[str, _Entry] = {}
        self._since: dict[str, Decimal] = {}  # asset -> sum of sign * (heard - baseline) over its entries

    def heard(self, cid: str, asset: str, sign: int, executed: Decimal, *, streamed: bool = False) -> None:
        """An order of ours was reported filled this far (synchronously, as the report arrives)."""
        entry = self._orders.get(cid)
        if entry is None:
            entry = self._orders[cid] = _Entry(asset, sign)
        if executed > entry.heard:
            self._add(entry, executed - entry.heard)
            entry.heard = executed
        if streamed and executed > entry.streamed:
            entry.streamed = executed

    def heard_again(self, cid: str, executed: Decimal, *, streamed: bool = False) -> None:
        """A later report of an order the ledger still counts (finished since: no longer open)."""
        entry = self._orders.get(cid)
        if entry is not None:
            self.heard(cid, entry.asset, entry.sign, executed, streamed=streamed)

    def held(self, asset: str) -> Decimal:
        return self.balances.get(asset, _ZERO) + self._since.get(asset, _ZERO)

    def _add(self, entry: _Entry, qty: Decimal) -> None:
        """`qty` more of `entry` counts on top of the snapshot (less, when negative)."""
        self._since[entry.asset] = self._since.get(entry.asset, _ZERO) + entry.sign * qty

    def _rebase(self, entry: _Entry, baseline: Decimal) -> None:
        if baseline > entry.baseline:
            self._add(entry, entry.baseline - baseline)
            entry.baseline = baseline

    def pushed(self, push: BalancePush, open_ids: set[str]) -> None:
        """A pushed account position or balance delta from the user data stream."""
        if push.kind == "delta":
            if push.time_ms > self._as_of.get(push.asset, -1):
                # a deposit or withdrawal after the snapshot in force (a position event sent after it
                # carries it already: then it is older than that snapshot and ignored)
                self.balances[push.asset] = self.balances.get(push.asset, _ZERO) + push.delta
                self._as_of[push.asset] = push.time_ms
            return
        fresh = {b.asset for b in push.balances if push.time_ms >= self._as_of.get(b.asset, -1)}
        for b in push.balances:
            if b.asset in fresh:
                self.balances[b.asset] = b.free + b.locked
                self._as_of[b.asset] = push.time_ms
        for entry in self._orders.values():
            if entry.asset in fresh:
                self._rebase(entry, entry.streamed)
        self._prune(open_ids)

    def begin_read(self) -> dict[str, Decimal]:
        """Before a REST account read leaves: what it will cover at least."""
        return {cid: e.heard for cid, e in self._orders.items()}

    def read(self, balances: dict[str, Decimal], time_ms: int, covered: dict[str, Decimal],
             open_ids: set[str]) -> None:  # fmt: skip
        """A REST account snapshot (`covered` from begin_read before its request)."""
        fresh = {a for a in balances if time_ms >= self._as_of.get(a, -1)}
        for asset in fresh:
            self.balances[asset] = balances[asset]
            self._as_of[asset] = time_ms
        for asset in set(self.balances) - set(balances):
            if time_ms >= self._as_of.get(asset, -1):  # not listed: nothing held of it any more
                self.balances.pop(asset)
                self._as_of[asset] = time_ms
                fresh.add(asset)
        for cid, entry in self._orders.items():
            if entry.asset in fresh:
                self._rebase(entry, covered.get(cid, _ZERO))
                entry.streamed = max(entry.streamed, entry.baseline)
        self._prune(open_ids)

    def _prune(self, open_ids: set[str]) -> None:
        """Finished orders whose every fill a snapshot covers add nothing any more."""
        for cid in [c for c, e in self._orders.items() if c not in open_ids and e.baseline >= e.heard]:
            entry = self._orders.pop(cid)
            self._add(entry, entry.baseline - entry.heard)  # zero, as heard never falls below the baseline
