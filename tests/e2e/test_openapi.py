"""The OpenAPI document: bodies the routes parse themselves, the bearer scheme, every error answer; the
/docs page loads only local assets; a live instance serves neither."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import yaml

from api.app import create_app
from api.settings import Settings, load_settings
from tests.e2e.server import ApiServer


def test_order_and_cancel_bodies_are_documented(viewer: httpx.Client) -> None:
    spec = viewer.get("/openapi.json").json()
    for path, field in (("/api/live/order", "quantity"), ("/api/live/cancel", "origClientOrderId")):
        body = spec["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert field in body["content"]["application/json"]["schema"]["properties"]


AUTHENTICATED = ("/api/", "/metrics")
LIVE_ERRORS = {"401", "403", "409", "422", "429", "503"}


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]


def _error_ref(response: dict[str, Any]) -> str:
    ref: str = response["content"]["application/json"]["schema"]["$ref"]
    return ref


def test_bearer_scheme_is_declared_on_every_authenticated_route(api: ApiServer) -> None:
    spec = api.client().get("/openapi.json").json()  # no token: the document is public off live
    bearer = spec["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    for path, _method, op in _operations(spec):
        if path.startswith(AUTHENTICATED):
            assert op["security"] == [{"bearer": []}], path
        else:
            assert "security" not in op, path


def test_every_route_documents_its_error_answers_with_the_one_error_body(viewer: httpx.Client) -> None:
    spec = viewer.get("/openapi.json").json()
    body = spec["components"]["schemas"]["ErrorBody"]
    assert body["required"] == ["ok", "reason", "detail"]
    assert body["properties"]["ok"] == {"type": "boolean", "enum": [False]}
    assert body["properties"]["reason"]["type"] == "string"
    # FastAPI's own 422 shape is not what api.errors answers, so it is not documented
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, method, op in _operations(spec):
        responses = op["responses"]
        errors = {status for status in responses if status[0] in "45"}
        assert "500" in errors, path
        for status in errors:
            assert _error_ref(responses[status]) == "#/components/schemas/ErrorBody", (path, status)
            assert responses[status]["description"], (path, status)
        if path.startswith(AUTHENTICATED):
            assert {"401", "403", "503"} <= errors, path
        if path.startswith("/api/live/"):
            assert errors >= LIVE_ERRORS, path
        if method == "post":
            assert {"400", "413", "422"} <= errors, path
        if op.get("parameters"):
            assert "422" in errors, path
    paths = spec["paths"]
    assert {"404", "504"} <= set(paths["/api/live/cancel"]["post"]["responses"])
    assert "504" in paths["/api/live/order"]["post"]["responses"]
    assert "404" in paths["/api/orders/{client_order_id}"]["get"]["responses"]
    assert "503" in paths["/readyz"]["get"]["responses"]


def test_documented_401_is_what_the_route_answers(api: ApiServer) -> None:
    anonymous = api.client()
    for path in ("/api/status", "/api/live/ping", "/metrics"):
        answer = anonymous.get(path)
        assert answer.status_code == 401
        assert set(answer.json()) == {"ok", "reason", "detail"}


def test_docs_page_loads_only_local_assets(api: ApiServer) -> None:
    client = api.client()
    page = client.get("/docs")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "http://" not in page.text
    assert "https://" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) == 3  # the Swagger UI script, its stylesheet and the favicon
    for url in assets:
        assert url.startswith("/docs/static/"), url
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert answer.content, url
    # the page's script loads the document from this server, which answers it
    assert "url: '/openapi.json'" in page.text
    assert client.get("/openapi.json").status_code == 200
    # FastAPI's CDN-backed ReDoc page is not served
    assert client.get("/redoc").status_code == 404


def _live_settings(tmp_path: Path) -> Settings:
    config = {
        "profile": "live",
        "exchange": "binance_spot",
        "routing": {
            "base_url_rest": "https://api.binance.com",
            "base_url_ws": "wss://stream.binance.com:9443",
        },
    }
    path = tmp_path / "config.live.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"BINANCE_API_KEY_LIVE": "k", "BINANCE_API_SECRET_LIVE": "s"}
    return load_settings(config_file=path, env=env, data_dir=tmp_path)


async def test_live_profile_serves_no_docs_and_no_openapi(tmp_path: Path) -> None:
    settings = _live_settings(tmp_path)
    assert settings.profile == "live"
    app = create_app(settings)  # the lifespan never runs: nothing connects
    assert app.openapi_url is None
    assert app.docs_url is None
    assert app.redoc_url is None
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://live") as client:
        for url in ("/docs", "/redoc", "/openapi.json", "/docs/static/swagger-ui-bundle.js"):
            answer = await client.get(url)
            assert answer.status_code == 404, url
            assert answer.json()["ok"] is False, url
