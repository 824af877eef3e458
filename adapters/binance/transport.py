"""An httpx transport on aiohttp that sends the URL's bytes untouched and says whether a failure happened
before or after sending.

Why not httpx's default transport: it stalls past ~8 concurrent requests (encode/httpx#3215; numbers in
benchmarks/bench_transport.py). Why not httpx_aiohttp.AiohttpTransport as is: it hands the URL to yarl,
which re-quotes it (`%2F`→`/`, `%2C`→`,`), so the bytes sent are not the bytes signed (-1022); and it maps
aiohttp read timeouts and disconnects to httpx.ConnectTimeout, which reads as "never sent" — unsafe for
orders. Here: `yarl.URL(..., encoded=True)`, and connect failures → httpx.ConnectError/ConnectTimeout,
everything after → httpx.ReadTimeout/RemoteProtocolError/ReadError, with the aiohttp error chained.
"""

from __future__ import annotations

import contextvars
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import yarl

_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
# The request's last check (fetch's `before_send`), for the connector: set in the caller's task only
_BEFORE_SEND: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "propbot_before_send", default=None
)


class _CheckedConnector(aiohttp.TCPConnector):
    """Runs the request's `before_send` once it holds its connection, the last await before aiohttp
    writes the request: opening a new connection (DNS, TCP, TLS) awaits, and the caller may no longer
    want the request by then. A refusal hands the connection back to the pool unused."""

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        conn = await super().connect(req, traces, timeout)
        check = _BEFORE_SEND.get()
        if check is not None:
            try:
                check()
            except BaseException:
                conn.release()
                raise
        return conn


@dataclass(frozen=True, slots=True)
class Answer:
    """What `AiohttpTransport.fetch` returns: what BinanceSpotClient reads of an httpx.Response."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    content: bytes


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Keep-alive connection pool on aiohttp; the session is created lazily inside the running loop."""

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = _CheckedConnector(
                limit=self._max_connections, keepalive_timeout=self._keepalive_s, ssl=self._ssl
            )
            # Cookies are meaningless for Binance and would leak state between requests
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _HOP_HEADERS]
        body = await request.aread()
        client_timeout = aiohttp.ClientTimeout(
            connect=timeout.get("pool"), sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
        )
        status, raw_headers, content = await self._exchange(
            request.method, str(request.url), headers, body or None, client_timeout, request
        )
        return httpx.Response(
            status,
            headers=raw_headers,
            stream=httpx.ByteStream(content),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def fetch(
        self, method: str, url: str, headers: Mapping[str, str], timeout_s: float,
        before_send: Callable[[], None] | None = None,
    ) -> Answer:  # fmt: skip
        """The same exchange without building an httpx.Request and httpx.Response around it (the
        client's hot path: that wrapping cost about as much as the request itself on loopback). Raises the
        same httpx errors as handle_async_request, with no request attached. `before_send` is called once
        a connection is held, with no await before the request is written; what it raises is raised as is
        and nothing is sent."""
        client_timeout = aiohttp.ClientTimeout(connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s)
        token = _BEFORE_SEND.set(before_send)
        try:
            status, raw_headers, content = await self._exchange(
                method, url, headers, None, client_timeout, None
            )
        finally:
            _BEFORE_SEND.reset(token)
        return Answer(status, raw_headers, content)

    async def _exchange(
        self, method: str, url: str, headers: Any, body: bytes | None, timeout: aiohttp.ClientTimeout,
        request: httpx.Request | None,
    ) -> tuple[int, Any, bytes]:  # fmt: skip
        session = self._get_session()
        try:
            async with session.request(
                method,
                yarl.URL(url, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
                # httpx decodes what it asked gzip for itself; fetch() callers get the decoded body
                auto_decompress=request is None,
                timeout=timeout,
            ) as resp:
                content = await resp.read()
                # raw pairs for an httpx.Response, the case-insensitive view for fetch()
                return resp.status, (list(resp.raw_headers) if request is not None else resp.headers), content
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            cls = (
                httpx.ConnectTimeout
                if isinstance(exc, aiohttp.ConnectionTimeoutError)
                else httpx.ConnectError
            )
            raise cls(str(exc) or type(exc).__name__, request=request) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError(str(exc) or "server disconnected", request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
