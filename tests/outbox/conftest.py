"""Fixtures of the outbox tests: a private JetStream broker per module (tests that kill it start their
own) and a unique source name per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import pg_schema
from tests.outbox.broker import Broker, broker


@pytest.fixture(scope="module")
def nats_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with broker(tmp_path_factory.mktemp("nats")) as b:
        yield b


@pytest.fixture
def source() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


@pytest.fixture
def mirror_url(journal_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database for the mirror, of the primary's kind (not migrated: the mirror migrates it)."""
    if journal_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'mirror.db'}"
        return
    with pg_schema("m", migrate=False) as url:
        yield url
