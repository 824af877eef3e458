"""The OpenAPI document and the /docs page, served from this process: no CDN, no external URL.

The live profile serves neither (no /docs, no /openapi.json). Elsewhere /openapi.json is FastAPI's
schema plus what FastAPI cannot see: the bearer scheme of the custom auth dependency (api.deps) and
every error status a route can answer with, each with the one error body (api.errors.error_body).
"""

from __future__ import annotations

import copy
import json
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
STATIC_URL = "/docs/static"

ERROR_BODY_SCHEMA: dict[str, Any] = {
    "title": "ErrorBody",
    "type": "object",
    "description": 'Every failure: {"ok": false, "reason": "<machine_code>", "detail": ...}',
    "required": ["ok", "reason", "detail"],
    "properties": {
        "ok": {"type": "boolean", "enum": [False]},
        "reason": {"type": "string", "description": "machine-readable code, e.g. unauthorized"},
        "detail": {"description": "a message, a list of field errors or an object; may be null"},
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}

# What each status means here, with the reasons it carries (api.errors, api.deps, api.middleware)
_DESCRIPTIONS = {
    400: "Malformed request body: malformed_json, duplicate_key, client_disconnected",
    401: "No or invalid bearer token: unauthorized (with WWW-Authenticate: Bearer)",
    403: "The operator's role lacks the permission (forbidden), or an approval signed by the wrong party",
    404: "No such resource: unknown_order, unknown_approval, not_found",
    409: "Refused in the current state: session state, risk limit, idempotency or version conflict",
    413: "Request body over the server's limit: body_too_large",
    422: "Invalid body or query (invalid_body, invalid_query, with field errors) or rejected order",
    429: "Too many journal-writing reads from this operator: rate_limited",
    500: "Unexpected server failure: internal_error (details only in the server log)",
    503: "Not ready or a dependency unavailable: not_ready, journal_unavailable, exchange_unavailable, ...",
    504: "The venue did not say whether the order executed: EXECUTION_STATUS_UNKNOWN",
}
# FastAPI's own 422 schema, replaced by ErrorBody: the validation handler (api.errors) answers that shape
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _authenticated(path: str) -> bool:
    return path.startswith("/api/") or path == "/metrics"


def error_statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses one operation can answer with."""
    statuses = {500}
    if _authenticated(path):
        statuses |= {401, 403, 503}  # auth, role, operators store or engine not ready
    if path.startswith("/api/live/"):
        # engine errors (409 state/risk, 422 venue rejection, 503 venue down), 429 per-operator read limit
        statuses |= {409, 422, 429, 503}
    if path.startswith("/api/approvals"):
        statuses |= {409}  # a step the request's state, the session or the token refuses
    if path.startswith("/api/approvals/"):
        statuses |= {404}  # unknown_approval
    if path.startswith("/api/session/"):
        statuses |= {409}  # a transition the session's state or the approval refuses
    if path.startswith("/api/journal") or path.startswith("/api/orders/"):
        statuses |= {503}  # journal_unavailable, journal_corrupt
    if method == "post":
        statuses |= {400, 413, 422}  # every POST parses its own JSON body (api.deps.json_body)
    if operation.get("parameters") or operation.get("requestBody"):
        statuses |= {422}
    if path.startswith("/api/orders/"):
        statuses |= {404}
    if path == "/api/live/cancel":
        statuses |= {404}
    if path in ("/api/live/order", "/api/live/cancel"):
        statuses |= {504}
    if path == "/readyz":
        statuses |= {503}
    return statuses


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema with the bearer scheme on authenticated routes and the error answers."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["ErrorBody"] = copy.deepcopy(ERROR_BODY_SCHEMA)
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An operator token (propbot operators ...), sent as Authorization: Bearer <token>",
        }
    }
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if _authenticated(path):
                operation["security"] = [{"bearer": []}]
            responses = operation["responses"]
            for status in sorted(error_statuses(path, method, operation)):
                responses[str(status)] = {
                    "description": _DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": dict(_ERROR_REF)}},
                }
    schemas = components["schemas"]
    for name in _FASTAPI_VALIDATION_SCHEMAS:  # HTTPValidationError first: it is what refers to the other
        body = schemas.pop(name, None)
        if body is not None and f'"#/components/schemas/{name}"' in json.dumps(schema):
            schemas[name] = body  # still referred to somewhere
    return schema


def install(app: FastAPI, *, live: bool) -> None:
    """Serve /openapi.json and /docs (assets from the fastapi-offline package); nothing on live."""
    if live:
        return

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    static = files("fastapi_offline") / "static"
    app.mount(STATIC_URL, StaticFiles(directory=str(static)), name="docs-static")

    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title=f"{app.title} API",
            swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon.png",
            # Swagger UI's default validator badge loads an image from validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.add_api_route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False)
