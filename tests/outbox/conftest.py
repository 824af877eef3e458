"""Fixtures of the outbox tests: a private JetStream broker per module (tests that kill it start their
own) and a unique source name per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.outbox.broker import Broker, broker


@pytest.fixture(scope="module")
def nats_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with broker(tmp_path_factory.mktemp("nats")) as b:
        yield b


@pytest.fixture
def source() -> str:
    return f"s{uuid.uuid4().hex[:10]}"
