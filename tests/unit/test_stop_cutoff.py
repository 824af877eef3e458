"""api.middleware.StopCutoffMiddleware answers 503 engine_stopped only for a call the server's stop
cancelled (uvicorn cancels the call's task once its graceful bound has passed), nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from api.middleware import StopCutoffMiddleware

SCOPE = {"type": "http", "method": "POST", "path": "/api/live/order", "headers": []}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def recorder() -> tuple[list[dict[str, Any]], Callable[[Any], Awaitable[None]]]:
    """An ASGI send that keeps every message, and the list it keeps them in."""
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    return sent, send


async def test_a_call_the_stop_cancels_is_answered_engine_stopped() -> None:
    entered = asyncio.Event()

    async def stuck(scope: Any, receive: Any, send: Any) -> None:
        entered.set()
        await asyncio.sleep(60)

    sent, send = recorder()
    task = asyncio.create_task(StopCutoffMiddleware(stuck)(SCOPE, _receive, send))
    await entered.wait()
    task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")  # what uvicorn's stop does
    await task
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 503
    assert b'"engine_stopped"' in sent[1]["body"]


async def test_a_cancelled_error_the_call_was_not_cancelled_by_is_not_answered_as_a_stop() -> None:
    # Was: any CancelledError out of the app was answered 503 engine_stopped ("the server stopped") and
    # swallowed, with no log line: a bug raising one (an awaited future that something else cancelled)
    # while the server runs on told the client the server had stopped, and hid the traceback uvicorn logs
    # with its 500
    async def stray(scope: Any, receive: Any, send: Any) -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    sent, send = recorder()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(StopCutoffMiddleware(stray)(SCOPE, _receive, send))
    assert sent == []  # uvicorn answers it (500) and logs it, as without the middleware


async def test_a_call_cancelled_after_its_answer_started_is_not_answered_twice() -> None:
    entered = asyncio.Event()

    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        entered.set()
        await asyncio.sleep(60)

    sent, send = recorder()
    task = asyncio.create_task(StopCutoffMiddleware(streaming)(SCOPE, _receive, send))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
