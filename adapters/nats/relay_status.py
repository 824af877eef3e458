"""A separate relay process's status on loopback: GET /status (JSON) and GET /metrics (Prometheus)."""

from __future__ import annotations

from aiohttp import web

from adapters.nats.relay import OutboxRelay


async def serve_status(relay: OutboxRelay, port: int, host: str = "127.0.0.1") -> web.AppRunner:
    async def status(_request: web.Request) -> web.Response:
        return web.json_response(relay.status())

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text=relay.metrics(), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
