"""Group commit: concurrent callers' transitions share one transaction; each caller is answered only
after the commit that holds its own rows."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from engine.journal import Journal, NewEntry, Record
from engine.metrics import Metrics


class GroupCommitWriter:
    def __init__(self, journal: Journal, *, max_groups: int = 1024, metrics: Metrics | None = None) -> None:
        self.journal = journal
        self.metrics = metrics or Metrics()
        self._max_groups = max_groups
        self._queue: asyncio.Queue[tuple[Sequence[NewEntry], asyncio.Future[list[Record]]]] | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread owns the database writes: no lock contention inside the process
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-writer")
        self.commits = 0
        self.rows = 0

    async def append(self, entries: Sequence[NewEntry]) -> list[Record]:
        """Durably append `entries` as one all-or-nothing group.

        Raises:
            VersionConflict: a stream version was taken; none of `entries` was written.
        """
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="journal-group-commit")
        fut: asyncio.Future[list[Record]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((entries, fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_groups and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            groups = [entries for entries, _ in batch]
            try:
                results = await loop.run_in_executor(self._executor, self.journal.append_groups, groups)
            except Exception as exc:  # the database itself failed: every caller in the batch learns it
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.commits += 1
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    self.rows += len(result)
                    self.metrics.observe(result)
                    fut.set_result(result)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self._queue = None
        self._executor.shutdown(wait=True)
