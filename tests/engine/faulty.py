"""A journal whose commits fail on demand (a transient database outage), for the engine's fault tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from engine.journal import NewEntry, RawRow
from engine.persistence.sql_journal import JournalUnavailable, SqlJournal


class FlakyJournal(SqlJournal):
    """append_groups raises JournalUnavailable while `fail` > 0 and `fail_if(groups)` holds; with
    `after_commit`, once the transaction committed (the database's answer to COMMIT was lost). While
    `dark` is set the database cannot be reached at all: appends, `settle` and scans fail (nothing is
    written); `then_dark` sets it right after a lost answer (an outage that outlasts it)."""

    fail = 0
    fail_if: Callable[[Sequence[Sequence[NewEntry]]], bool] | None = None
    after_commit = False
    dark = False
    then_dark = False
    lost_answers = 0  # commits that landed and raised

    def append_groups(self, groups: Any) -> Any:
        if self.dark:
            raise JournalUnavailable("journal write failed: injected outage (database unreachable)")
        if self.fail and (self.fail_if is None or self.fail_if(groups)):
            self.fail -= 1
            if self.after_commit:
                super().append_groups(groups)
                self.lost_answers += 1
                self.dark = self.then_dark
            raise JournalUnavailable("journal write failed: injected outage")
        return super().append_groups(groups)

    def settle(self, timeout_s: float = 5.0) -> None:
        if self.dark:
            raise JournalUnavailable("journal settle failed: injected outage (database unreachable)")
        super().settle(timeout_s)

    def scan(self, batch_size: int = 10_000, after_seq: int = 0) -> Iterator[RawRow]:
        if self.dark:
            raise JournalUnavailable("journal read failed: injected outage (database unreachable)")
        return super().scan(batch_size, after_seq)


def has_trigger(trigger: str) -> Callable[[Sequence[Sequence[NewEntry]]], bool]:
    return lambda groups: any(e.trigger == trigger for g in groups for e in g)
