"""One paper-profile API server per test module (real uvicorn on 127.0.0.1, temp SQLite journal)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.server import ApiServer, paper_settings


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with ApiServer(paper_settings(tmp_path_factory.mktemp("paper"))) as server:
        yield server


@pytest.fixture(scope="module")
def admin(api: ApiServer) -> httpx.Client:
    return api.client("admin")


@pytest.fixture(scope="module")
def trader(api: ApiServer) -> httpx.Client:
    return api.client("trader")


@pytest.fixture(scope="module")
def viewer(api: ApiServer) -> httpx.Client:
    return api.client("viewer")


@pytest.fixture(scope="module")
def auditor(api: ApiServer) -> httpx.Client:
    return api.client("auditor")
