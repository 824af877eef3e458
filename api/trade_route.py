"""The hot routes (POST /api/live/order and /api/live/cancel) without FastAPI's per-request work.

Per call FastAPI's request handler solves the endpoint's dependency graph, builds a sub-response for
headers, opens exit stacks and serialises the answer through a pydantic TypeAdapter, and the router
before it matches the path against every route of every included router; for an order that cost about
as much as the engine's own decision. Two pieces take the hot pair off that path:

- `TradeRoute`: an endpoint `(request, call)` whose one dependency, `api.deps.trade_call` (the operator
  authenticated with the trade permission, the ready engine, the audit slot), is called directly and
  whose dict answer is sent as JSON. The endpoint's shape is checked when the route is built, so a
  parameter FastAPI would have resolved cannot be added and then silently ignored;
- `TradeRoutes`: a middleware that hands a POST to a trade route's exact path straight to that route's
  handler, with the app's own exception handlers (Starlette's ExceptionMiddleware, so an error is
  translated exactly as on any route: api.errors).

What stays as before: the route is an ordinary FastAPI route (OpenAPI describes it, any other method
or path still goes through the router), the audit route (api.audit_trail) writes the call's one row,
the body limit (api.middleware) runs first, and an unexpected exception still reaches the app's 500
handler.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from api.audit_trail import AuditedRoute
from api.deps import TradeCall, trade_call

TradeEndpoint = Callable[[Request, TradeCall], Coroutine[Any, Any, dict[str, Any]]]


class TradeRoute(AuditedRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        d = self.dependant
        params = (d.path_params, d.query_params, d.header_params, d.cookie_params, d.body_params)
        calls = [sub.call for sub in d.dependencies]
        if any(params) or calls != [trade_call] or d.request_param_name is None:
            raise TypeError(f"{path}: a TradeRoute endpoint takes (request: Request, call: TradeCallDep)")
        if self.dependencies or self.response_model not in (None, dict[str, Any]):
            raise TypeError(f"{path}: a TradeRoute has no route dependencies and answers a plain dict")

    def request_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: TradeEndpoint = self.endpoint
        status = self.status_code or 200

        async def handle(request: Request) -> Response:
            return JSONResponse(await endpoint(request, await trade_call(request)), status_code=status)

        return handle


class TradeRoutes:
    """Middleware: POST to a trade route's path goes to that route's handler, not through the router.

    `api` is the app (for its exception handlers, read at the first call as the app's own middleware
    stack is); `routes` the TradeRoutes it serves (they must be included into `api` unprefixed and
    without include-level dependencies: create_app does that)."""

    def __init__(self, app: ASGIApp, api: FastAPI, routes: Iterable[TradeRoute]) -> None:
        self.app = app
        self._api = api
        self._routes = list(routes)
        self._handlers: dict[str, ASGIApp] | None = None

    def _build(self) -> dict[str, ASGIApp]:
        # The handlers the app gives ExceptionMiddleware; 500/Exception belong to ServerErrorMiddleware,
        # outside every user middleware, which this one stays inside of
        handlers = {k: v for k, v in self._api.exception_handlers.items() if k not in (500, Exception)}
        out: dict[str, ASGIApp] = {}
        for route in self._routes:
            if route.methods != {"POST"}:
                raise TypeError(f"{route.path}: TradeRoutes serves POST routes only")
            out[route.path] = ExceptionMiddleware(_asgi(route.get_route_handler()), handlers=handlers)
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            if self._handlers is None:
                self._handlers = self._build()
            handler = self._handlers.get(scope["path"])
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _asgi(handler: Callable[[Request], Coroutine[Any, Any, Response]]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await handler(Request(scope, receive, send))
        await response(scope, receive, send)

    return app
