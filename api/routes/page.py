"""The status page: three static files from this package (api/static), served from memory.

No token: the page holds no data (every panel is fetched by its script with the operator's token), and no
audit row: loading it is not an API call. A strict Content-Security-Policy: this server only, no inline
script or style, no frames, no forms posting elsewhere; the page's script builds every text node itself
(never HTML from data), so even a hostile hold reason or client order id renders as text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files

from fastapi import APIRouter, Request, Response

router = APIRouter(include_in_schema=False)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidated (ETag) on every load: an upgrade is seen at once
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _load(name: str, media_type: str) -> Asset:
    body = (files("api") / "static" / name).read_bytes()
    return Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


ASSETS = {
    "/": _load("index.html", "text/html; charset=utf-8"),
    "/ui/app.js": _load("app.js", "text/javascript; charset=utf-8"),
    "/ui/app.css": _load("app.css", "text/css; charset=utf-8"),
}


def _serve(asset: Asset, request: Request) -> Response:
    headers = {**_HEADERS, "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/")
async def index(request: Request) -> Response:
    return _serve(ASSETS["/"], request)


@router.get("/ui/app.js")
async def script(request: Request) -> Response:
    return _serve(ASSETS["/ui/app.js"], request)


@router.get("/favicon.ico")
async def favicon() -> Response:
    return Response(status_code=204, headers=_HEADERS)  # no icon; answered so browsers log no 404


@router.get("/ui/app.css")
async def stylesheet(request: Request) -> Response:
    return _serve(ASSETS["/ui/app.css"], request)
