"""`propbot relay` with per-row timestamps, for bench_relay.py --api-load --trace (benchmark only).

Run: python traced_relay.py TRACE_FILE -- <propbot relay options>. It runs the same OutboxRelay through
the same CLI loop, and notes for each row the wall-clock time its read started and returned, its
publish_async call and its JetStream ack; on SIGTERM it writes them to TRACE_FILE as JSON
{"rows": {seq: [read_start, read_end, published, acked]}, "wakes": [time of each wake-up: a NOTIFY, or
the SQLite commit watch seeing a commit]}. Nothing in the relay itself changes: the journal read
and the JetStream context are wrapped from outside.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from common import ROOT  # noqa: F401  (puts the repo on sys.path)

from adapters.nats.relay import OutboxRelay
from engine.outbox import HDR_SEQ, OutboxMessage


class TracedJetStream:
    """The relay's JetStream context, noting each publish's call and ack times."""

    def __init__(self, js: Any, trace: dict[int, list[float]]) -> None:
        self._js = js
        self._trace = trace

    def __getattr__(self, name: str) -> Any:
        return getattr(self._js, name)

    async def publish_async(self, subject: str, data: bytes, **kw: Any) -> Any:
        seq = int(kw["headers"][HDR_SEQ])
        fut = await self._js.publish_async(subject, data, **kw)
        row = self._trace.setdefault(seq, [0.0, 0.0, 0.0, 0.0])
        row[2] = time.time()
        fut.add_done_callback(lambda _f: row.__setitem__(3, time.time()))
        return fut


class TracedRelay(OutboxRelay):
    trace: dict[int, list[float]]
    wakes: list[float]

    def wake(self) -> None:
        self.wakes.append(time.time())
        super().wake()

    async def _read(self, after: int) -> list[OutboxMessage]:
        start = time.time()
        messages = await super()._read(after)
        end = time.time()
        for m in messages:
            self.trace.setdefault(m.seq, [0.0, 0.0, 0.0, 0.0])[:2] = [start, end]
        return messages

    async def publish_next(self, js: Any) -> int:
        return await super().publish_next(TracedJetStream(js, self.trace))


def main() -> None:
    trace_file, argv = Path(sys.argv[1]), sys.argv[3:]
    import api.cli_outbox as cli

    trace: dict[int, list[float]] = {}
    wakes: list[float] = []

    class Relay(TracedRelay):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.trace = trace
            self.wakes = wakes

    real_run = cli._run_relay

    async def run_and_dump(relay: Any, *a: Any, **kw: Any) -> None:
        try:
            await real_run(relay, *a, **kw)
        finally:
            trace_file.write_text(json.dumps({"rows": trace, "wakes": wakes}))

    import adapters.nats.relay as relay_module

    relay_module.OutboxRelay = Relay  # type: ignore[misc]
    cli._run_relay = run_and_dump  # type: ignore[assignment]
    cli.relay.main(argv, standalone_mode=False)


if __name__ == "__main__":
    main()
