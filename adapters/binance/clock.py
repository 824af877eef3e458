"""Server-time offset for SIGNED requests (rest-api.md "Timing security").

Each sample brackets one GET /api/v3/time between two local readings; the server's answer is assumed
to be taken at the RTT midpoint, so offset = serverTime - (t_sent + t_received) / 2. The sample with the
smallest RTT has the smallest error bound (± RTT/2) and wins.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


def _local_ms() -> float:
    return time.time() * 1000.0


@dataclass(frozen=True, slots=True)
class ClockSample:
    server_time_ms: int
    sent_ms: float
    received_ms: float

    @property
    def rtt_ms(self) -> float:
        return self.received_ms - self.sent_ms

    @property
    def offset_ms(self) -> float:
        return self.server_time_ms - (self.sent_ms + self.received_ms) / 2.0


class ServerClock:
    """Local clock corrected by the measured offset to the venue's clock."""

    def __init__(
        self,
        fetch_server_time: Callable[[], Awaitable[int]] | None = None,
        *,
        local_ms: Callable[[], float] = _local_ms,
        samples: int = 5,
        warn_skew_ms: float = 500.0,
    ) -> None:
        if samples < 1:
            raise ValueError(f"samples must be at least 1, was {samples}")
        self._fetch = fetch_server_time
        self._local_ms = local_ms
        self.samples = samples
        self.warn_skew_ms = warn_skew_ms
        self.offset_ms = 0.0
        self.rtt_ms: float | None = None
        self.server_time_ms: int | None = None
        self.synced_at_ms: float | None = None
        self.sync_count = 0
        self.last_error: str | None = None

    def attach(self, fetch_server_time: Callable[[], Awaitable[int]]) -> None:
        """Give the clock its source of server time when it was built before the client."""
        if self._fetch is None:
            self._fetch = fetch_server_time

    @property
    def synced(self) -> bool:
        return self.synced_at_ms is not None

    def timestamp_ms(self) -> int:
        """The venue's current time in milliseconds, for the `timestamp` parameter."""
        return int(self._local_ms() + self.offset_ms)

    def now_s(self) -> float:
        """The venue's current time in epoch seconds (the governor's clock: windows are the venue's)."""
        return (self._local_ms() + self.offset_ms) / 1000.0

    @staticmethod
    def best(samples: list[ClockSample]) -> ClockSample:
        """The sample with the smallest RTT."""
        return min(samples, key=lambda s: s.rtt_ms)

    async def resync(self, fetch: Callable[[], Awaitable[int]] | None = None) -> ClockSample:
        """Take `samples` measurements and adopt the offset of the one with the smallest RTT; `fetch`
        replaces the attached source for this resync (e.g. one that sends on another lane).

        Raises:
            RuntimeError: no server-time source attached.
            ExchangeError: from the fetch function (the previous offset is kept).
        """
        source = fetch if fetch is not None else self._fetch
        if source is None:
            raise RuntimeError("ServerClock has no server-time source; call attach() first")
        taken: list[ClockSample] = []
        for _ in range(self.samples):
            sent = self._local_ms()
            try:
                server = await source()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                raise
            taken.append(ClockSample(int(server), sent, self._local_ms()))
        best = self.best(taken)
        self.offset_ms = best.offset_ms
        self.rtt_ms = best.rtt_ms
        self.server_time_ms = best.server_time_ms
        self.synced_at_ms = self._local_ms()
        self.sync_count += 1
        self.last_error = None
        return best

    async def ensure_synced(self) -> None:
        if not self.synced:
            await self.resync()

    def status(self) -> dict[str, Any]:
        level = "OK" if self.synced and abs(self.offset_ms) <= self.warn_skew_ms else "WARN"
        return {
            "level": level,
            "offset_ms": round(self.offset_ms, 3),
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
            "synced": self.synced,
            "sync_count": self.sync_count,
            "last_error": self.last_error,
        }
