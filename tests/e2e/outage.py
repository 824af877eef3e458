"""A journal whose commit answer is lost and which then stays unreachable, installed on a runtime's
journal in the API tests: the first append holding `cid` commits, then raises as if the answer to COMMIT
were lost, and from then on every append and settle raises JournalUnavailable until `dark` is cleared."""

from __future__ import annotations

import threading
from typing import Any

from engine.persistence.sql_journal import JournalUnavailable


class LostAnswerOutage:
    def __init__(self, cid: str) -> None:
        self.cid = cid
        self.dark = threading.Event()  # the database is unreachable: set by the lost answer
        self.lost: list[int] = []  # one entry once the answer was lost

    def install(self, journal: Any) -> None:
        append, settle = journal.append_groups, journal.settle

        def commits_then_fails(groups: Any) -> Any:
            if self.dark.is_set():
                raise JournalUnavailable("journal write failed: injected outage")
            if not self.lost and any(e.stream_id == self.cid for g in groups for e in g):
                append(groups)  # committed: the answer is what gets lost
                self.lost.append(1)
                self.dark.set()
                raise JournalUnavailable("journal write failed: injected outage")
            return append(groups)

        def unreachable(timeout_s: float = 5.0) -> None:
            if self.dark.is_set():
                raise JournalUnavailable("journal settle failed: injected outage")
            settle(timeout_s)

        journal.append_groups, journal.settle = commits_then_fails, unreachable
