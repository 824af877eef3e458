"""`propbot serve` noting when each journal row's commit returned, for bench_relay.py --api-load --trace
(benchmark only).

Run: python traced_serve.py TRACE_FILE -- <propbot serve options>. SqlJournal.append_groups is wrapped
from outside: when it returns (the transaction committed), the wall-clock time is noted for every seq it
wrote; at exit the notes go to TRACE_FILE as JSON {seq: committed_at}. The row's created_at is taken
inside the same transaction before the INSERT, so created_at -> committed_at is the engine's own part of
the commit -> consumer receipt lag.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from common import ROOT  # noqa: F401  (puts the repo on sys.path)

from engine.persistence.sql_journal import SqlJournal


def main() -> int:
    trace_file, argv = Path(sys.argv[1]), sys.argv[3:]
    committed: dict[int, float] = {}
    append_groups = SqlJournal.append_groups

    def traced(self: SqlJournal, groups: Any) -> Any:
        results = append_groups(self, groups)
        now = time.time()
        for recs in results:
            if isinstance(recs, list):
                for r in recs:
                    committed[r.seq] = now
        return results

    SqlJournal.append_groups = traced  # type: ignore[method-assign]
    # uvicorn re-raises the SIGTERM it stopped on once it is done; with a handler, that is an exit
    # that runs the `finally` below instead of the default action's silent death
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from api.cli import main as propbot

    try:
        return propbot(argv)
    finally:
        trace_file.write_text(json.dumps(committed))


if __name__ == "__main__":
    sys.exit(main())
