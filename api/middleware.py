"""Plain ASGI middleware: the request body limit (refuse by Content-Length up front, and by the bytes
actually streamed), and the answer to a call that the server's stop cuts off."""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body

MAX_BODY_BYTES = 64 * 1024


async def _reject(send: Send, status: int, reason: str, detail: str) -> None:
    body = json.dumps(error_body(reason, detail)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Buffers at most `max_bytes` of the body, then hands the app a receive() that replays it."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body is limited to {self.max_bytes} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _reject(send, 400, "bad_request", "Content-Length is not a number")
                return
            if declared > self.max_bytes:
                await _reject(send, 413, "body_too_large", too_large)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reject(send, 413, "body_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class StopCutoffMiddleware:
    """A call still open when the server's stop runs out of patience (uvicorn cancels it once its graceful
    shutdown's bound, api.serving.GRACEFUL_SHUTDOWN_S, has passed: a call waiting on a journal commit whose
    outcome the database cannot tell yet waits without a bound of its own) is answered 503 engine_stopped,
    as the engine answers a call its stop ends, instead of uvicorn's 500 for a task that raised. The
    cancellation ends here: the call is answered, and nothing waits for the task. Only a cancellation of
    the call's own task is answered so (uvicorn cancels one only when it stops): a CancelledError the app
    raised without one is left to uvicorn, which logs it and answers 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if started:
                raise  # part of an answer went out: uvicorn closes the connection
            task = asyncio.current_task()
            if task is None or not task.cancelling():
                # Not this call's task cancelled (the stop's doing) but a CancelledError out of the app (an
                # awaited future something else cancelled): a bug, which uvicorn logs and answers 500
                raise
            await _reject(
                send, 503, "engine_stopped",
                "the server stopped before this call was answered; what the journal holds of it is what the "
                "next start replays (query the order by its clientOrderId)",
            )  # fmt: skip
