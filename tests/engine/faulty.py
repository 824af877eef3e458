"""A journal whose commits fail on demand (a transient database outage), for the engine's fault tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from engine.config import EngineSettings
from engine.journal import NewEntry, RawRow
from engine.persistence.sql_journal import JournalUnavailable, SqlJournal
from engine.runtime import Engine
from tests.engine.conftest import go_live
from tests.fakes import FakeExchange, FrozenClock


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

    def lose_answer(self, trigger: str, *, then_dark: bool = False) -> None:
        """The next commit holding a `trigger` row lands and raises (its answer lost); `then_dark`: the
        database is unreachable from then on."""
        self.fail, self.fail_if, self.after_commit = 1, has_trigger(trigger), True
        self.then_dark = then_dark

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


@asynccontextmanager
async def flaky_engine(
    db_url: str, settings: EngineSettings, fake: FakeExchange
) -> AsyncIterator[tuple[Engine, FlakyJournal]]:
    """A started engine (safe_mode off, the TESTNET session) on a FlakyJournal; the faults are lifted
    before it stops."""
    journal = FlakyJournal(db_url)
    eng = Engine(journal, fake, replace(settings, safe_mode=False), FrozenClock(), session_id="testnet")
    await eng.start()
    try:
        yield eng, journal
    finally:
        journal.fail, journal.dark = 0, False
        await eng.stop()


@asynccontextmanager
async def flaky_live(
    db_url: str, settings: EngineSettings, fake: FakeExchange
) -> AsyncIterator[tuple[Engine, FlakyJournal]]:
    """flaky_engine taken LIVE (a signed two-man-rule approval)."""
    async with flaky_engine(db_url, settings, fake) as (eng, journal):
        await go_live(eng)
        yield eng, journal
