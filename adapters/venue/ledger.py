"""Account balances with Binance's free/locked split. Every mutation keeps both sides non-negative."""

from __future__ import annotations

from decimal import Decimal

_ZERO = Decimal(0)


class Ledger:
    """free/locked per asset; `fees` collects every commission taken, so totals can be reconciled."""

    def __init__(self, balances: dict[str, Decimal] | None = None) -> None:
        self.free: dict[str, Decimal] = {a: Decimal(v) for a, v in (balances or {}).items()}
        self.locked: dict[str, Decimal] = dict.fromkeys(self.free, _ZERO)
        self.fees: dict[str, Decimal] = {}

    def ensure(self, asset: str) -> None:
        self.free.setdefault(asset, _ZERO)
        self.locked.setdefault(asset, _ZERO)

    def can_lock(self, asset: str, amount: Decimal) -> bool:
        return self.free.get(asset, _ZERO) >= amount

    def lock(self, asset: str, amount: Decimal) -> None:
        self.ensure(asset)
        if amount > self.free[asset]:
            raise ValueError(f"cannot lock {amount} {asset}: free was {self.free[asset]}")
        self.free[asset] -= amount
        self.locked[asset] += amount

    def unlock(self, asset: str, amount: Decimal) -> None:
        self.ensure(asset)
        if amount > self.locked[asset]:
            raise ValueError(f"cannot unlock {amount} {asset}: locked was {self.locked[asset]}")
        self.locked[asset] -= amount
        self.free[asset] += amount

    def spend_locked(self, asset: str, amount: Decimal) -> None:
        """Pay out of a lock (a fill consumes what the order reserved)."""
        self.ensure(asset)
        if amount > self.locked[asset]:
            raise ValueError(f"cannot spend {amount} {asset}: locked was {self.locked[asset]}")
        self.locked[asset] -= amount

    def credit(self, asset: str, amount: Decimal, fee: Decimal = _ZERO) -> None:
        """Receive `amount` minus the commission `fee` taken in the same asset."""
        self.ensure(asset)
        self.free[asset] += amount - fee
        if fee:
            self.fees[asset] = self.fees.get(asset, _ZERO) + fee

    def assets(self) -> list[str]:
        return sorted(self.free)
