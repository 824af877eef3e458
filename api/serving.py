"""How PropBot's API is served: one uvicorn configuration for `propbot serve` and for the benchmark's
bare-endpoint floor, so the two are measured on the same stack.

- httptools instead of h11 (the pure-Python parser was the largest item of an order's profile) and uvloop;
- no access-log line per request (every /api/live call already has its audit row, and a log line per
  order cost more than the order's own decision);
- limits: uvicorn has no header or body read timeout (an idle socket, or one sending its head a byte at a
  time, is held forever), so `TimedHttpTools` closes a connection whose request is not fully received
  within REQUEST_READ_TIMEOUT_S and answers 400 to an unfinished request head over MAX_HEADER_BYTES;
  keep-alive is short, the connection count bounded, WebSockets off (the API has no WebSocket route),
  and a stop waits at most GRACEFUL_SHUTDOWN_S for open calls before cancelling them;
- a request httptools cannot parse (an invalid request line, a bad Content-Length, broken chunked framing)
  never reaches the app: uvicorn answers it itself, through the protocol's `send_400_response`, which
  `TimedHttpTools` overrides to answer in the API's error shape (JSON with a `reason`) instead of
  uvicorn's text/plain line, then closes the connection as uvicorn does;
- the garbage collector: once start-up is done (imports, the journal replayed) everything it built is
  frozen out of the collector's scans (gc.freeze), and the youngest generation is collected every
  GC_THRESHOLD[0] new objects instead of 700. Per request the garbage is almost all freed by reference
  counting; the collector only finds cycles, but its scans of the young and of the whole heap cost about
  a fifth of an order's time at the default thresholds.
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.errors import error_body

REQUEST_READ_TIMEOUT_S = 15.0  # bodies are at most 64 KiB (api.middleware)
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 1000  # beyond this uvicorn answers 503 at once instead of queueing without bound
MAX_HEADER_BYTES = 16 * 1024  # an unfinished request head longer than this is refused with 400
# How long a stop waits for calls still open before cancelling them and stopping the engine. uvicorn
# waits without a bound by default, and a call can wait without one too: on a journal commit whose
# outcome cannot be read back while the database is down (engine.writer). Longer than a venue call's own
# timeout (binance.timeout_s, 10 s by default), so a call waiting on the venue normally gets its answer;
# a call cut off here ends as the engine's stop leaves it (the next start replays and reconciles it)
GRACEFUL_SHUTDOWN_S = 20.0
GC_THRESHOLD = (20_000, 10, 10)  # gc.set_threshold: generation 0, then 1 and 2 (Python's: 700, 10, 10)


class TimedHttpTools(HttpToolsProtocol):
    """HttpToolsProtocol with a deadline on reading each request (head and body), armed when the
    connection opens and at the first byte of each later request, disarmed once the request is in,
    and a cap on the bytes of a request head that has not ended yet. Relies on uvicorn's protocol
    callbacks (connection_made, data_received, on_headers_complete, on_message_complete) and on its
    `send_400_response`, its one answer to a request it cannot parse: recheck them when uvicorn is
    upgraded (tests/e2e/test_strict_server_limits.py does)."""

    read_timeout_s = REQUEST_READ_TIMEOUT_S
    max_head_bytes = MAX_HEADER_BYTES
    _deadline: asyncio.TimerHandle | None = None
    _in_head = True
    _head_bytes = 0
    # A refusal (reason, detail) held back until the requests before it on the connection are answered
    _held: tuple[str, str] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._held is not None:
            return  # a request was refused: nothing after it on this connection can be framed
        if self._deadline is None:
            self._arm()  # a keep-alive connection starts its next request
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        too_large = self._in_head and self._head_bytes > self.max_head_bytes
        if too_large and self._held is None and not self.transport.is_closing():
            self._disarm()
            self._refuse(
                "request_head_too_large", f"the request head is limited to {self.max_head_bytes} bytes"
            )

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._in_head = True
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request httptools could not parse (it has logged `msg`, a warning without
        a traceback): the same 400, in the API's error shape."""
        self._refuse("bad_http_request", msg)

    def _refuse(self, reason: str, detail: str) -> None:
        """A 400 written before any app saw the request (no operator, no audit row), then the connection
        closed: what follows on it cannot be framed. Held back while a request before it on the connection
        is still unanswered (pipelined): written now, it would be read as that request's answer, and the
        close would drop the answer the app then gives (to an order it placed)."""
        if self._held is not None:
            return
        latest = self.cycle  # the newest request whose head was parsed
        if latest is not None and latest.more_body:
            # The error is in its body: it is the refused request. Queued behind another, it never starts
            queued = [entry for entry in self.pipeline if entry[0] is latest]
            for entry in queued:
                self.pipeline.remove(entry)
            unanswered = bool(queued)
        else:  # the error is in a request after it: wait for its answer (and those queued before it)
            unanswered = latest is not None and not latest.response_complete
        if unanswered:
            self._held = (reason, detail)
            self._disarm()
            self.flow.pause_reading()
            return
        self._write_refusal(reason, detail)

    def on_response_complete(self) -> None:
        # No queued request starts now: every request before a held refusal is answered
        answered = not self.pipeline
        super().on_response_complete()
        if self._held is not None and answered and not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self._write_refusal(*self._held)

    def _write_refusal(self, reason: str, detail: str) -> None:
        """Headers as uvicorn's own 400 has them; the connection closed after it."""
        body = json.dumps(error_body(reason, detail)).encode()
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:  # server, date
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join([*head, body]))
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.logger.warning("closing a connection that did not send its request in time")
            self.transport.close()


def server_config(
    app: Any,
    host: str,
    port: int,
    *,
    read_timeout_s: float = REQUEST_READ_TIMEOUT_S,
    limit_concurrency: int = MAX_CONNECTIONS,
    log_level: str = "info",
    **overrides: Any,
) -> uvicorn.Config:
    protocol = type("TimedHttpTools", (TimedHttpTools,), {"read_timeout_s": read_timeout_s})
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "http": protocol,
        "loop": "uvloop",
        "ws": "none",
        "timeout_keep_alive": KEEP_ALIVE_S,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "limit_concurrency": limit_concurrency,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,  # if h11 is ever chosen again
        **overrides,
    }
    return uvicorn.Config(app, **options)


class TunedServer(uvicorn.Server):
    """uvicorn's server with the collector tuned once the app has started (see the module docstring)."""

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        tune_collector()


def tune_collector() -> None:
    """The process's collector as `propbot serve` runs it (the module docstring): what start-up built is
    frozen out of its scans, and the youngest generation is collected every GC_THRESHOLD[0] objects."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def make_server(app: Any, host: str, port: int, **overrides: Any) -> uvicorn.Server:
    return TunedServer(server_config(app, host, port, **overrides))


def serve(app: Any, host: str, port: int, **overrides: Any) -> None:
    make_server(app, host, port, **overrides).run()
