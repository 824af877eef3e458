"""The audit row of one operator call, as a slot that exactly one party fills.

The engine claims the slot when a call reaches a decision, to put the row into the same commit as the
order's first rows (write-ahead: the row is durable before anything reaches the venue). If that commit
fails, the slot is released again. Whoever finishes the call (the API's audit trail) writes the row
itself when nobody claimed it: refusals before any decision, idempotent replays, reads. A call that ends
while its claimed commit is still pending (its client went away) leaves `on_released` behind, so a commit
that then fails still gets the call's row written by the finisher; once that commit is durable the slot
is `settled` and drops it (the callback refers to the call's request, which refers to the slot: left in
place, every order would leave a reference cycle for the garbage collector).
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable
from typing import Any

from engine.journal import NewEntry


class _CallIds:
    """Unique ids for audit streams: a random 64-bit prefix drawn once per process (again in a forked
    child) and a counter, 32 hex characters like the uuid4 they replace, without a getrandom call and
    a UUID object per call. Two processes share ids only if they draw the same prefix."""

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_IDS = _CallIds()


def audit_entry(actor: str, action: str, detail: dict[str, Any]) -> NewEntry:
    """One row per call (a single-version stream of its own)."""
    return NewEntry("audit", f"{action}-{_IDS.next()}", 1, action, None, None, detail, actor)


class AuditSlot:
    __slots__ = ("action", "actor", "claimed", "detail", "on_released", "settled")

    def __init__(self, actor: str, action: str, detail: dict[str, Any] | None = None) -> None:
        self.actor = actor
        self.action = action
        self.detail: dict[str, Any] = dict(detail or {})
        self.claimed = False
        self.settled = False  # the claimed row is durable: nothing can release it any more
        # Set by the finisher when the call ended before its claimed commit did (see the module docstring)
        self.on_released: Callable[[BaseException | None], None] | None = None

    def claim(self, outcome: dict[str, Any]) -> NewEntry:
        """The row, with the call's outcome as decided; the caller commits it with its own rows."""
        self.claimed = True
        return audit_entry(self.actor, self.action, {**self.detail, "outcome": outcome})

    def settle(self) -> None:
        """The commit holding the claimed row is durable."""
        self.settled = True
        self.on_released = None

    def unclaim(self, exc: BaseException | None = None) -> None:
        """The commit holding the row failed: the row was not written."""
        self.claimed = False
        released, self.on_released = self.on_released, None
        if released is not None:
            released(exc)

    def entry(self, outcome: dict[str, Any]) -> NewEntry:
        """The row for a call that no decision claimed."""
        return audit_entry(self.actor, self.action, {**self.detail, "outcome": outcome})
