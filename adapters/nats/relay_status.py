"""A separate relay's (or mirror's) status on loopback: GET /status (JSON) and GET /metrics (Prometheus)."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web


class Reporting(Protocol):
    def status(self) -> dict[str, Any]: ...

    def metrics(self) -> str: ...


async def serve_status(service: Reporting, port: int, host: str = "127.0.0.1") -> web.AppRunner:
    async def status(_request: web.Request) -> web.Response:
        return web.json_response(service.status())

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text=service.metrics(), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
