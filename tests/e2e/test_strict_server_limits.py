"""`propbot serve`'s uvicorn limits: a request must arrive within the read deadline (slowloris sockets
are closed), a keep-alive and a connection limit are set, and 400 slow sockets do not stop the server
answering a normal request."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from api.serving import GRACEFUL_SHUTDOWN_S, KEEP_ALIVE_S, MAX_CONNECTIONS, MAX_HEADER_BYTES, server_config
from tests.e2e.server import ApiServer, journal_rows, paper_settings

_SLOW = 400


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    srv = uvicorn.Server(server_config(_app, "127.0.0.1", 0, read_timeout_s=1.0, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield "127.0.0.1", port
    srv.should_exit = True
    thread.join(timeout=10)


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(3)
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_the_config_sets_the_limits() -> None:
    config = server_config(_app, "127.0.0.1", 0)
    assert config.timeout_keep_alive == KEEP_ALIVE_S == 5
    assert config.limit_concurrency == MAX_CONNECTIONS
    assert config.h11_max_incomplete_event_size == MAX_HEADER_BYTES
    assert config.ws == "none"
    # uvicorn waits for open calls without a bound by default: a stop must end (api.serving)
    assert config.timeout_graceful_shutdown == GRACEFUL_SHUTDOWN_S == 20.0


def test_slow_sockets_are_closed_and_do_not_block_a_normal_request(server: tuple[str, int]) -> None:
    host, port = server
    slow = []
    for _ in range(_SLOW):
        sock = socket.create_connection((host, port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    idle = socket.create_connection((host, port))  # connects, then never sends a byte
    # Drip one more header byte per socket while a normal client asks
    stop = threading.Event()

    def drip() -> None:
        while not stop.is_set():
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"X")
            time.sleep(0.2)

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        started = time.monotonic()
        r = httpx.get(f"http://{host}:{port}/", timeout=5)
        assert r.status_code == 200
        assert time.monotonic() - started < 3
        time.sleep(1.5)  # past the 1 s read deadline
        assert _closed_by_peer(idle)
        assert all(_closed_by_peer(sock) for sock in slow[:20])
    finally:
        stop.set()
        dripper.join(timeout=5)
        for sock in [*slow, idle]:
            sock.close()


def test_a_slow_body_is_cut_off(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(1.5)
        assert _closed_by_peer(sock)


def test_a_prompt_keep_alive_client_is_not_cut_off(server: tuple[str, int]) -> None:
    host, port = server
    with httpx.Client(base_url=f"http://{host}:{port}") as client:
        for _ in range(3):
            assert client.get("/").status_code == 200
            time.sleep(0.6)  # 1.8 s on one connection, longer than the read deadline


def _answer(server: tuple[str, int], raw: bytes) -> tuple[int, dict[str, str], bytes, bool]:
    """Send `raw` on a new connection: the status, headers and body answered, and whether the server
    then closed the connection."""
    with socket.create_connection(server) as sock:
        sock.sendall(raw)
        sock.settimeout(0.9)  # answered before the read deadline, not closed by it
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        while len(body) < int(headers["content-length"]):
            body += sock.recv(4096)
        return int(status_line.split()[1]), headers, body, _closed_by_peer(sock)


# What httptools cannot parse: uvicorn answers it itself (the app never sees it) through the protocol's
# send_400_response, which TimedHttpTools gives the API's error shape
UNPARSEABLE = {
    "request line": b"GARBAGE\r\n\r\n",
    "Content-Length not a number": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "two Content-Lengths": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "header name": b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
}


@pytest.mark.parametrize("raw", list(UNPARSEABLE.values()), ids=list(UNPARSEABLE))
def test_a_request_that_is_not_http_is_a_json_400_and_the_connection_closes(
    server: tuple[str, int], raw: bytes
) -> None:
    # Was uvicorn's own text/plain "Invalid HTTP request received." beside every other 4xx in JSON
    status, headers, body, closed = _answer(server, raw)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert json.loads(body) == {
        "ok": False,
        "reason": "bad_http_request",
        "detail": "Invalid HTTP request received.",
    }
    assert closed


def test_an_unfinished_request_head_over_the_cap_is_refused(server: tuple[str, int]) -> None:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 1)
    status, headers, body, closed = _answer(server, raw)
    assert (status, headers["content-type"]) == (400, "application/json")
    assert json.loads(body) == {"ok": False, "reason": "request_head_too_large",
                                "detail": f"the request head is limited to {MAX_HEADER_BYTES} bytes"}  # fmt: skip
    assert closed


def test_propbot_serve_answers_unparseable_requests_without_a_journal_row_or_a_traceback(
    tmp_path: Path,
) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(level=logging.DEBUG)
    # uvicorn's loggers do not propagate to the root: listen on both
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]
    with ApiServer(paper_settings(tmp_path), served=True) as api:
        for logger in loggers:
            logger.addHandler(keep)
        try:
            auditor = api.client("auditor")
            before = journal_rows(auditor)
            address = ("127.0.0.1", api.port)
            for raw in [*UNPARSEABLE.values(), b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 1)]:
                status, headers, body, closed = _answer(address, raw)
                assert (status, headers["content-type"], closed) == (400, "application/json", True)
                assert json.loads(body)["reason"] in ("bad_http_request", "request_head_too_large")
            assert api.client("viewer").get("/api/whoami").status_code == 200  # still serving
            assert journal_rows(auditor) == before  # nothing reached the app: nothing journaled
        finally:
            for logger in loggers:
                logger.removeHandler(keep)
    assert [r for r in records if r.exc_info or r.levelno >= logging.ERROR] == []
    assert [
        r.getMessage() for r in records if r.name == "uvicorn.error" and r.levelno == logging.WARNING
    ] == ["Invalid HTTP request received."] * len(UNPARSEABLE)


def _answers(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Every response read off `sock` until the server closes it: (status, body) in order."""
    sock.settimeout(3)
    data = b""
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while chunk := sock.recv(65536):
            data += chunk
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers["content-length"])
        out.append((int(status_line.split()[1]), rest[:length]))
        data = rest[length:]
    return out


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
BROKEN_BODY = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nzz\r\n"


@pytest.mark.parametrize(
    ("raw", "answered"),
    [
        (GET + b"GARBAGE\r\n\r\n", 1),  # a complete request, then one whose request line is not HTTP
        (GET + GET + b"GARBAGE\r\n\r\n", 2),  # two, the second queued behind the first
        (GET + BROKEN_BODY, 1),  # the refused request's head was parsed (queued), its body is not HTTP
    ],
    ids=["after one", "after two", "body of a queued one"],
)
def test_a_request_that_is_not_http_after_pipelined_ones_is_answered_after_them(
    server: tuple[str, int], raw: bytes, answered: int
) -> None:
    # Was: the 400 was written at once, while the requests before it on the connection were still being
    # answered, and the connection closed: their answers were lost and the client read the 400 as the
    # answer to its first request (which the app did handle: an order placed, answered bad_http_request)
    with socket.create_connection(server) as sock:
        sock.sendall(raw)
        answers = _answers(sock)
    assert [status for status, _ in answers] == [200] * answered + [400]
    assert json.loads(answers[-1][1])["reason"] == "bad_http_request"


def test_an_order_pipelined_before_a_request_that_is_not_http_gets_its_own_answer(tmp_path: Path) -> None:
    # Was: the client read 400 bad_http_request ("never reached the app") as the order's answer, while
    # the engine placed the order: a client that then sent it again under a new id bought twice
    with ApiServer(paper_settings(tmp_path), served=True) as api:
        body = json.dumps({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                           "quantity": "0.001", "price": "60000.00", "newClientOrderId": "pb-piped-1"}).encode()  # fmt: skip
        order = (
            b"POST /api/live/order HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + b"Authorization: Bearer %s\r\n" % api.tokens["trader"].encode()
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
        with socket.create_connection(("127.0.0.1", api.port)) as sock:
            sock.sendall(order + b"GARBAGE\r\n\r\n")
            answers = _answers(sock)
        assert [status for status, _ in answers] == [200, 400]
        placed = json.loads(answers[0][1])
        assert (placed["clientOrderId"], placed["state"]) == ("pb-piped-1", "ACKED")
        assert json.loads(answers[1][1])["reason"] == "bad_http_request"
