"""How PropBot's API is served: one uvicorn configuration for `propbot serve` and for the benchmark's
bare-endpoint floor, so the two are measured on the same stack.

httptools instead of h11 (the pure-Python parser was the largest item of a request's profile) and uvloop;
no access-log line per request (every /api/live call already has its audit row, and a log line per
order cost more than the order's own decision).
"""

from __future__ import annotations

from typing import Any

import uvicorn


def server_config(app: Any, host: str, port: int, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "access_log": False,
        "http": "httptools",
        "loop": "uvloop",
        **overrides,
    }
    return uvicorn.Config(app, **options)


def serve(app: Any, host: str, port: int, **overrides: Any) -> None:
    uvicorn.Server(server_config(app, host, port, **overrides)).run()
