"""GET / and its two assets: served without a token, never audited, with a strict CSP; GET /api/whoami."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

from api.routes.page import CSP
from tests.e2e.server import ApiServer, journal_rows


@pytest.mark.parametrize(
    ("path", "media"),
    [("/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")],
)
def test_page_assets_need_no_token_and_carry_the_csp(api: ApiServer, path: str, media: str) -> None:
    r = api.client().get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(media)
    assert r.headers["content-security-policy"] == CSP
    assert "default-src 'self'" in CSP
    assert "'unsafe-inline'" not in CSP
    assert "'unsafe-eval'" not in CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    again = api.client().get(path, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


def test_page_has_no_inline_script_and_no_external_url() -> None:
    static = files("api") / "static"
    html = (static / "index.html").read_text()
    assert '<script src="/ui/app.js"' in html
    assert html.count("<script") == 1  # the one external script, no inline one
    assert " style=" not in html
    assert re.search(r"<[^>]*\son[a-z]+\s*=", html) is None  # no inline event handler attributes
    for name in ("index.html", "app.js", "app.css"):
        text = (static / name).read_text()
        assert "http://" not in text
        assert "https://" not in text
        assert "innerHTML" not in text
        assert "insertAdjacentHTML" not in text
        assert "document.write" not in text


def test_loading_the_page_writes_no_journal_row(api: ApiServer, auditor: object) -> None:
    admin = api.client("admin")
    before = journal_rows(admin)
    for path in ("/", "/ui/app.js", "/ui/app.css", "/favicon.ico"):
        assert api.client().get(path).status_code in (200, 204)
    assert journal_rows(admin) == before


@pytest.mark.parametrize(
    ("role", "permissions"),
    [
        ("viewer", ["read"]),
        ("trader", ["read", "trade"]),
        ("auditor", ["audit", "read"]),
        ("admin", ["approve", "audit", "read", "session", "trade"]),
    ],
)
def test_whoami(api: ApiServer, role: str, permissions: list[str]) -> None:
    r = api.client(role).get("/api/whoami")
    assert r.status_code == 200
    assert r.json() == {"ok": True, "id": role, "role": role, "permissions": permissions}


def test_whoami_needs_a_token(api: ApiServer) -> None:
    assert api.client().get("/api/whoami").status_code == 401
