"""The JetStream stream that holds every journal source's rows, and connecting to NATS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from engine.outbox import SUBJECT_ROOT

log = logging.getLogger(__name__)
DEFAULT_STREAM = "PROPBOT"
# The broker drops a republished Nats-Msg-Id seen within this window. A relay that restarts within it
# (after an ack whose cursor commit was lost) publishes no duplicate; later, consumers deduplicate.
DEFAULT_DUPLICATE_WINDOW_S = 120.0


async def connect(url: str, name: str, on_error: Callable[[Exception], None] | None = None) -> Client:
    """One connection without the client's own reconnect: a reconnect could flush messages buffered for
    the old connection after ones the broker never got, and so break seq order in the stream. The
    caller reconnects (under its supervisor) and republishes from its cursor instead.

    `on_error` gets what nats-py reports only to its error callback; among it the broker's error answer
    to a publish_async (nats-py 2.16's APIError.from_error raises instead of returning the error, so the
    publish's future is never completed and would only time out)."""

    async def quiet(exc: Exception) -> None:  # the caller raises and logs it once, not nats-py's traceback
        log.debug("nats: %s: %s", type(exc).__name__, exc)
        if on_error is not None:
            on_error(exc)

    # max_reconnect_attempts=0 would mean "retry forever" inside connect(): 1 fails after a second try
    async with asyncio.timeout(10):
        return await nats.connect(
            servers=[url], name=name, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=1,
            reconnect_time_wait=0.1, error_cb=quiet,
        )  # fmt: skip


async def close_quietly(nc: Client, timeout_s: float = 5.0) -> None:
    """Close without waiting forever: nats-py's close can wait on a transport that never finishes
    closing (seen when a relay stopped right after a burst), and a stop must not hang."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.close(), timeout_s)


async def ensure_stream(
    js: JetStreamContext, stream: str, duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S
) -> None:
    """Create the file-backed stream (subjects propbot.>, limits retention) when it does not exist; an
    existing one is left as its operator configured it."""
    try:
        await js.stream_info(stream)
        return
    except NotFoundError:
        pass
    await js.add_stream(
        StreamConfig(
            name=stream,
            subjects=[f"{SUBJECT_ROOT}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            duplicate_window=duplicate_window_s,
        )
    )
