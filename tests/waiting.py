"""Wait for a condition instead of sleeping a guessed time: one sync and one async poller for every test."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


def eventually(cond: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll `cond()` until it is truthy and return its value; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


async def eventually_async(
    cond: Callable[[], Any | Awaitable[Any]], timeout: float = 5.0, interval: float = 0.01
) -> Any:
    """The same on an event loop; `cond` may be a plain function or a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
