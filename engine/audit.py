"""The audit row of one operator call, as a slot that exactly one party fills.

The engine claims the slot when a call reaches a decision, to put the row into the same commit as the
order's first rows (write-ahead: the row is durable before anything reaches the venue). If that commit
fails, the slot is released again. Whoever finishes the call (the API's audit trail) writes the row
itself when nobody claimed it: refusals before any decision, idempotent replays, reads. A call that ends
while its claimed commit is still pending (its client went away) leaves `on_released` behind, so a commit
that then fails still gets the call's row written by the finisher.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from engine.journal import NewEntry


def audit_entry(actor: str, action: str, detail: dict[str, Any]) -> NewEntry:
    """One row per call (a single-version stream of its own)."""
    return NewEntry("audit", f"{action}-{uuid.uuid4().hex}", 1, action, None, None, detail, actor)


class AuditSlot:
    __slots__ = ("action", "actor", "claimed", "detail", "on_released")

    def __init__(self, actor: str, action: str, detail: dict[str, Any] | None = None) -> None:
        self.actor = actor
        self.action = action
        self.detail: dict[str, Any] = dict(detail or {})
        self.claimed = False
        # Set by the finisher when the call ended before its claimed commit did (see the module docstring)
        self.on_released: Callable[[BaseException | None], None] | None = None

    def claim(self, outcome: dict[str, Any]) -> NewEntry:
        """The row, with the call's outcome as decided; the caller commits it with its own rows."""
        self.claimed = True
        return audit_entry(self.actor, self.action, {**self.detail, "outcome": outcome})

    def unclaim(self, exc: BaseException | None = None) -> None:
        """The commit holding the row failed: the row was not written."""
        self.claimed = False
        released, self.on_released = self.on_released, None
        if released is not None:
            released(exc)

    def entry(self, outcome: dict[str, Any]) -> NewEntry:
        """The row for a call that no decision claimed."""
        return audit_entry(self.actor, self.action, {**self.detail, "outcome": outcome})
