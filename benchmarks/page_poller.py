"""One open status page's load on the API, without a browser: the same calls at the same cadence as
api/static/app.js (GET /api/status every second; orders, fills, positions, journal and approvals when
the journal moved, or every 5th tick), in a background thread, counting what it sent."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

TICK_S = 1.0
FULL_EVERY = 5
FILLS_WINDOW = 1000
KEEP_JOURNAL = 25


class PagePoller:
    def __init__(self, base: str, token: str) -> None:
        self._client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="page-poller", daemon=True)
        self.requests = 0
        self.errors = 0
        self.ticks = 0
        self.started = 0.0
        self.stopped = 0.0
        self._last_seq: int | None = None
        self._fills_cursor: int | None = None
        self._journal_cursor = 0
        self._approvals = True

    def __enter__(self) -> PagePoller:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.stopped = time.monotonic()
        self._client.close()

    @property
    def req_s(self) -> float:
        return self.requests / max(self.stopped - self.started, 1e-9)

    def _get(self, path: str, **params: Any) -> httpx.Response:
        self.requests += 1
        r = self._client.get(path, params=params)
        if r.status_code >= 500 or r.status_code in (401, 403, 429):
            self.errors += 1
        return r

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self._tick()
            self.ticks += 1
            self._stop.wait(max(0.0, TICK_S - (time.monotonic() - began)))

    def _tick(self) -> None:
        status = self._get("/api/status")
        if status.status_code != 200:
            return
        seq = status.json()["components"]["journal"]["detail"]["last_seq"]
        if seq == self._last_seq and self.ticks % FULL_EVERY:
            return
        self._last_seq = seq
        self._get("/api/orders", open="true", limit=200)
        self._fills(seq)
        self._get("/api/positions")
        start = max(self._journal_cursor, seq - KEEP_JOURNAL)
        journal = self._get("/api/journal", after_seq=start, limit=KEEP_JOURNAL)
        if journal.status_code == 200:
            self._journal_cursor = journal.json()["next_after_seq"]
        if self._approvals and self._get("/api/approvals").status_code in (404, 405):
            self._approvals = False

    def _fills(self, seq: int) -> None:
        first = self._fills_cursor is None
        cursor = 0 if first else max(self._fills_cursor or 0, seq - FILLS_WINDOW)
        for _ in range(20 if first else 1):
            r = self._get("/api/fills", after_seq=cursor, limit=1000)
            if r.status_code != 200:
                return
            body = r.json()
            if body["fills"]:
                cursor = body["fills"][-1]["seq"]
            if body["next_after_seq"] is None:
                break
            cursor = body["next_after_seq"]
        self._fills_cursor = cursor
