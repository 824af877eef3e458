"""A client that dies mid-request (a killed process, a timeout) leaves no traceback and no damage."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ApiServer, paper_settings
from tests.waiting import eventually


def _half_request(port: int, path: str, headers: str = "") -> None:
    """Promise a 1000-byte body, send 10 bytes, hang up."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{headers}"
            f'Content-Length: 1000\r\n\r\n{{"symbol":'.encode()
        )


def test_api_and_simulator_shrug_off_a_client_that_hangs_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from adapters.simulator.server import SimulatorServer

    caplog.set_level(logging.ERROR)
    uvicorn_log = logging.getLogger("uvicorn.error")
    with ApiServer(paper_settings(tmp_path)) as api, SimulatorServer() as sim:
        # uvicorn configures its loggers at start (no propagation to the root): listen to them directly
        uvicorn_log.addHandler(caplog.handler)
        token = api.tokens["trader"]
        _half_request(api.port, "/api/live/order", f"Authorization: Bearer {token}\r\n")
        _half_request(sim.port, "/api/v3/order")
        # both servers keep serving, and the journal is whole
        eventually(lambda: api.client("viewer").get("/healthz").status_code == 200)
        assert httpx.get(f"{sim.base_url}/api/v3/ping").status_code == 200
        assert api.client("auditor").get("/api/journal/verify").status_code == 200
        time.sleep(0.3)  # waiting for something NOT to be logged: no condition to poll for
    uvicorn_log.removeHandler(caplog.handler)
    assert "Traceback" not in caplog.text
    assert "Exception in ASGI application" not in caplog.text
