"""In-process counters for /metrics: transitions, refusals by reason, SENT→answer latency."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable

from engine.journal import Record

_REFUSALS = frozenset({"reject", "reconcile_rejected"})


class Histogram:
    """Cumulative buckets in Prometheus' sense (each bucket counts every observation ≤ its bound)."""

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = sorted(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        out, total = [], 0
        for bound, n in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class Metrics:
    def __init__(self) -> None:
        self.transitions: Counter[tuple[str, str, str]] = Counter()
        self.refusals: Counter[str] = Counter()
        self.send_latency = Histogram(
            [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
        )

    def observe(self, records: Iterable[Record]) -> None:
        for rec in records:
            self.transitions[(rec.stream, rec.trigger, rec.to_state or "")] += 1
            if rec.trigger in _REFUSALS:
                self.refusals[rec.reason or "unspecified"] += 1
