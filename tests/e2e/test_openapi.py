"""The routes that parse their own JSON bodies still document them in the OpenAPI schema."""

from __future__ import annotations

import httpx


def test_order_and_cancel_bodies_are_documented(viewer: httpx.Client) -> None:
    spec = viewer.get("/openapi.json").json()
    for path, field in (("/api/live/order", "quantity"), ("/api/live/cancel", "origClientOrderId")):
        body = spec["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert field in body["content"]["application/json"]["schema"]["properties"]
