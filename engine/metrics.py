"""In-process counters for /metrics: transitions and refusals by reason, plain numbers the API exposes
(api/metrics.py) through prometheus-client at scrape time. SENT→answer latencies are handed to the
observers the API registers (its histogram): the engine imports no metrics library."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from engine.journal import Record

_REFUSALS = frozenset({"reject", "reconcile_rejected"})


class Metrics:
    def __init__(self) -> None:
        self.transitions: Counter[tuple[str, str, str]] = Counter()
        self.refusals: Counter[str] = Counter()
        self.send_latency_observers: list[Callable[[float], None]] = []

    def observe(self, records: Iterable[Record]) -> None:
        for rec in records:
            self.transitions[(rec.stream, rec.trigger, rec.to_state or "")] += 1
            if rec.trigger in _REFUSALS:
                self.refusals[rec.reason or "unspecified"] += 1

    def observe_send_latency(self, seconds: float) -> None:
        """From just before an order request is sent (its SENT row durable) to its answer journaled."""
        for observe in self.send_latency_observers:
            observe(seconds)
