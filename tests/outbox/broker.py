"""Helpers for the outbox tests: a private nats-server (killable), the relay as a real process, reading
a source's rows back with the consumer library."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
import pytest

from adapters.nats.outbox_consumer import OutboxConsumer, OutboxRow

ROOT = Path(__file__).resolve().parents[2]
NATS_SERVER = shutil.which("nats-server") or next(
    (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).is_file()), None
)
NO_NATS = "nats-server is not installed (.ci/run installs Debian's nats-server package)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """`nats-server -js` on 127.0.0.1:<port> with its store under `store`; stop() is SIGKILL."""

    def __init__(self, store: Path, port: int | None = None) -> None:
        if NATS_SERVER is None:
            pytest.skip(NO_NATS)
        self.store = store
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert NATS_SERVER is not None
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("nats-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None


@contextmanager
def broker(store: Path) -> Iterator[Broker]:
    b = Broker(store)
    b.start()
    try:
        yield b
    finally:
        b.kill()


def relay_process(
    db_url: str, nats_url: str, source: str, stream: str, *, env: dict[str, str] | None = None,
    status_port: int | None = None,
) -> subprocess.Popen[bytes]:  # fmt: skip
    args = [sys.executable, "-m", "api.cli", "relay", "--db", db_url, "--nats", nats_url, "--source", source,
            "--stream", stream, "--log-every", "1"]  # fmt: skip
    if status_port is not None:
        args += ["--status-port", str(status_port)]
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM, and the process's output; a relay that does not stop on SIGTERM fails the test."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack to the output
        out, _ = proc.communicate()
        raise AssertionError("the relay did not stop on SIGTERM:\n" + out.decode(errors="replace")) from None
    return out.decode(errors="replace")


async def stream_count(url: str, stream: str, source: str) -> int:
    """Messages of `source` in the stream (repeats included)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream, subjects_filter=f"propbot.{source}.>")
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def wait_for_count(url: str, stream: str, source: str, at_least: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            n = await stream_count(url, stream, source)
        except Exception:
            n = -1
        if n >= at_least or time.monotonic() > deadline:
            return n
        await asyncio.sleep(0.05)


async def consume_all(
    url: str, stream: str, source: str, durable: str = "check"
) -> tuple[list[OutboxRow], int]:
    """Every new row of `source` through the consumer library (repeats dropped), and how many messages
    the broker delivered in all."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        consumer = await OutboxConsumer.open(js, stream=stream, source=source, durable=durable)
        rows: list[OutboxRow] = []
        while True:
            batch = await consumer.fetch(512, timeout=0.5)
            rows += batch
            await consumer.ack(batch)
            if not batch and await consumer.pending() == 0:
                break
        await consumer.close()
        return rows, consumer.delivered
    finally:
        await nc.close()
