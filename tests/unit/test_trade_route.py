"""api.trade_route: the hot pair is answered by its own route handler, not through the router, with the
app's error handlers; anything else passes through; an endpoint FastAPI would have to resolve more for is
refused when the route is built."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request

from api import errors
from api.deps import TradeCallDep
from api.routes import live
from api.trade_route import TradeRoute, TradeRoutes


def _call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[list[dict[str, Any]], bool]:
    """The messages `app` sent, and whether the downstream app was reached."""
    reached = False

    async def downstream(scope: Any, receive: Any, send: Any) -> None:
        nonlocal reached
        reached = True

    api = FastAPI()
    errors.install(api, lambda request: None)
    api.state.runtime = object()  # a 401 is decided before the runtime is asked anything
    middleware = TradeRoutes(downstream, api=api, routes=live.trade_routes())
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"content-type", b"application/json")], "app": api, "state": {}}  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent, reached


def test_a_post_to_a_trade_route_is_answered_by_its_handler_with_the_apps_error_body() -> None:
    for path in ("/api/live/order", "/api/live/cancel"):
        sent, reached = _call(None, "POST", path, b"{}")
        assert not reached
        assert sent[0]["status"] == 401
        assert (b"www-authenticate", b"Bearer") in sent[0]["headers"]
        assert json.loads(sent[1]["body"])["reason"] == "unauthorized"


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/live/order"), ("POST", "/api/live/orders"),
                                              ("POST", "/api/live/order/"), ("POST", "/api/live/ping")])  # fmt: skip
def test_other_methods_and_paths_go_through_the_router(method: str, path: str) -> None:
    sent, reached = _call(None, method, path)
    assert reached
    assert sent == []


def test_an_endpoint_with_more_to_resolve_is_refused_when_built() -> None:
    router = APIRouter(route_class=TradeRoute)

    async def with_query(request: Request, call: TradeCallDep, symbol: str) -> dict[str, Any]:
        return {}

    async def without_call(request: Request) -> dict[str, Any]:
        return {}

    for endpoint in (with_query, without_call):
        with pytest.raises(TypeError, match="TradeRoute endpoint takes"):
            router.add_api_route("/x", endpoint, methods=["POST"])
