"""A journal whose commits fail on demand (a transient database outage), for the engine's fault tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from engine.journal import NewEntry
from engine.persistence.sql_journal import JournalUnavailable, SqlJournal


class FlakyJournal(SqlJournal):
    """append_groups raises JournalUnavailable while `fail` > 0 and `fail_if(groups)` holds; with
    `after_commit`, once the transaction committed (the database's answer to COMMIT was lost)."""

    fail = 0
    fail_if: Callable[[Sequence[Sequence[NewEntry]]], bool] | None = None
    after_commit = False

    def append_groups(self, groups: Any) -> Any:
        if self.fail and (self.fail_if is None or self.fail_if(groups)):
            self.fail -= 1
            if self.after_commit:
                super().append_groups(groups)
            raise JournalUnavailable("journal write failed: injected outage")
        return super().append_groups(groups)


def has_trigger(trigger: str) -> Callable[[Sequence[Sequence[NewEntry]]], bool]:
    return lambda groups: any(e.trigger == trigger for g in groups for e in g)
