"""create_app(settings) → FastAPI. The lifespan builds the runtime (api.bootstrap) and starts/stops it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from api import docs, errors
from api.auth import ensure_first_operators
from api.middleware import BodyLimitMiddleware, StopCutoffMiddleware
from api.routes import approvals, audit, health, live, metrics, page, session, status, views, whoami
from api.runtime import Runtime
from api.settings import Settings
from api.trade_route import TradeRoutes

log = logging.getLogger(__name__)


def _session_state(request: Request) -> str | None:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    session = runtime.engine.sessions.session if runtime else None
    return session.state.value if session else None


def create_app(
    settings: Settings,
    *,
    build: Callable[[Settings], Runtime] | None = None,
    announce: Callable[[str], None] = print,
    on_fenced: Callable[[], None] | None = None,
) -> FastAPI:
    """The PropBot API for `settings`. Nothing connects until the lifespan starts.

    `build` replaces api.bootstrap.build_runtime (tests inject their own wiring); `announce` receives
    one-line notices for the operator, such as where first-run tokens were written; `on_fenced` is
    called when this engine loses the account's writer lease (`propbot serve` exits then).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if build is None:
            from api.bootstrap import build_runtime

            runtime = build_runtime(settings)
        else:
            runtime = build(settings)
        if settings.profile == "paper":
            path = ensure_first_operators(settings.data_dir)
            if path is not None:
                announce(f"first start: operator tokens for admin and trader written to {path}")
        app.state.runtime = runtime
        if on_fenced is not None:
            runtime.on_fenced = on_fenced
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    is_live = settings.profile == "live"  # a live instance publishes no API map: no /docs, no /openapi.json
    app = FastAPI(
        title="PropBot",
        version="0.1.0",
        summary="Order-lifecycle engine for Binance Spot, SAFE by default",
        lifespan=lifespan,
        # FastAPI's own pages load unpinned CDN scripts; api.docs serves /docs from local assets
        docs_url=None,
        redoc_url=None,
        openapi_url=None if is_live else docs.OPENAPI_URL,
    )
    errors.install(app, _session_state)
    docs.install(app, live=is_live)
    for module in (health, live, session, approvals, audit, status, whoami, metrics, views, page):
        app.include_router(module.router)
    # Added first, so the body limit (added after it, hence outside it) runs before it too
    app.add_middleware(TradeRoutes, api=app, routes=live.trade_routes())
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(StopCutoffMiddleware)  # outermost of ours: it answers a call cut off anywhere inside
    return app
