"""Background components that never die silently: each runs under a supervisor that catches its failure,
logs it, reports it (journaled once per episode by the owner's callback), shows ERROR in the status and
restarts it with exponential backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Report = Callable[[str, str], Awaitable[None]]
_ERROR_SHOWN_S = 60.0  # a component is ERROR for this long after its last failure


class Supervised:
    def __init__(
        self, name: str, run: Callable[[], Awaitable[None]], report: Report | None,
        min_backoff_s: float, max_backoff_s: float,
    ) -> None:  # fmt: skip
        self.name = name
        self._run = run
        self._report = report
        self._min = min_backoff_s
        self._max = max_backoff_s
        self.failures = 0
        self.restarts = 0
        self.last_error: str | None = None
        self.last_failure_at: float | None = None
        self._episode = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._keep(), name=f"supervised-{self.name}")

    async def _keep(self) -> None:
        delay = self._min
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self._run()
                return  # finished on its own
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                self.last_failure_at = time.monotonic()
                log.error(
                    "%s failed (%s); restarting in %.1fs", self.name, self.last_error, delay, exc_info=exc
                )
                if self._report is not None and not self._episode:
                    self._episode = True
                    with contextlib.suppress(Exception):
                        await self._report(self.name, self.last_error)
            if loop.time() - started > self._max:  # it had been running well: a new episode
                delay = self._min
                self._episode = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max)
            self.restarts += 1

    def status(self) -> dict[str, Any]:
        recent = self.last_failure_at is not None and time.monotonic() - self.last_failure_at < _ERROR_SHOWN_S
        running = self.task is not None and not self.task.done()
        level = "ERROR" if recent or (self.task is not None and not running) else "OK"
        return {"status": level, "running": running, "failures": self.failures, "restarts": self.restarts,
                "last_error": self.last_error}  # fmt: skip


class Supervisor:
    def __init__(
        self, report: Report | None = None, *, min_backoff_s: float = 0.5, max_backoff_s: float = 30.0
    ) -> None:
        self._report = report
        self._min = min_backoff_s
        self._max = max_backoff_s
        self.components: dict[str, Supervised] = {}

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> Supervised:
        """Start `run` under supervision, once per name (a second call for a running name is a no-op)."""
        comp = self.components.get(name)
        if comp is None:
            comp = self.components[name] = Supervised(name, run, self._report, self._min, self._max)
        comp.start()
        return comp

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: comp.status() for name, comp in self.components.items()}

    async def stop(self) -> None:
        tasks = [c.task for c in self.components.values() if c.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
