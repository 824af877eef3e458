"""The server wrapper and the command line: loopback only, key generation, clean shutdown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import adapters.simulator as simulator
from adapters.simulator.server import SimulatorServer, main
from adapters.venue import MatchingEngine
from tests.simulator.helpers import drain_forever


def test_public_surface() -> None:
    assert sorted(simulator.__all__) == [
        "SimulatorServer",
        "SimulatorState",
        "create_simulator_app",
        "main",
        "run_simulator",
    ]


def test_main_generates_keys_when_none_given(capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[dict[str, Any]] = []
    assert main(["--port", "9999"], runner=lambda **kw: calls.append(kw), env={}) == 0
    out = capsys.readouterr().out
    (kw,) = calls
    assert kw["port"] == 9999
    assert kw["host"] == "127.0.0.1"
    assert len(kw["api_key"]) == len(kw["api_secret"]) == 64
    assert kw["api_key"] in out
    assert kw["api_secret"] in out


def test_main_takes_the_keys_from_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[dict[str, Any]] = []
    env = {"PROPBOT_SIM_API_KEY": "sim-key-1", "PROPBOT_SIM_API_SECRET": "sim-secret-1"}
    main([], runner=lambda **kw: calls.append(kw), env=env)
    assert (calls[0]["api_key"], calls[0]["api_secret"]) == ("sim-key-1", "sim-secret-1")
    out = capsys.readouterr().out
    assert "generated" not in out
    assert "sim-secret-1" not in out


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--api-key", "K", "--api-secret", "S"], {}),  # a secret in argv shows in `ps`
        (["--api-key", "only"], {}),
        ([], {"PROPBOT_SIM_API_KEY": "only"}),
        ([], {"PROPBOT_SIM_API_SECRET": "only"}),
        ([], {"PROPBOT_SIM_API_KEY": "", "PROPBOT_SIM_API_SECRET": "S"}),
        (["--host", "0.0.0.0"], {}),
        (["--host", "10.0.0.1"], {}),
    ],
)
def test_main_refuses_bad_arguments(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(SystemExit):
        main(argv, runner=lambda **kw: pytest.fail("must not run"), env=env)


def test_server_refuses_non_loopback_and_missing_keys() -> None:
    with pytest.raises(ValueError, match="loopback"):
        SimulatorServer(host="0.0.0.0")
    with pytest.raises(ValueError, match="api_key"):
        SimulatorServer(api_key="", api_secret="")


def test_server_uses_a_given_engine_and_port_zero() -> None:
    engine = MatchingEngine()
    with SimulatorServer(engine=engine) as sim:
        assert sim.port != 0
        assert sim.state.engine is engine
        assert httpx.get(f"{sim.base_url}/api/v3/ping").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{sim.base_url}/api/v3/ping")


async def test_stop_announces_server_shutdown_and_closes_websockets() -> None:
    sim = SimulatorServer().start()
    async with connect(f"{sim.ws_url}/ws/btcusdt@bookTicker") as ws:
        await ws.recv()
        stopping = asyncio.create_task(asyncio.to_thread(sim.stop))
        async with asyncio.timeout(5):
            while (msg := json.loads(await ws.recv())).get("e") != "serverShutdown":
                pass
        assert set(msg) == {"e", "E"}
        with pytest.raises(ConnectionClosed):
            await drain_forever(ws)
        await stopping


def test_main_registers_ed25519_keys_from_a_pem_file_or_base64(tmp_path: Path) -> None:
    pem = tmp_path / "ed.pem"
    pem.write_text("-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----\n")
    calls: list[dict[str, Any]] = []
    argv = ["--ed25519-key", f"A={pem}", "--ed25519-key", "B=QUJD"]
    main(argv, runner=lambda **kw: calls.append(kw))
    assert calls[0]["ed25519_keys"] == {"A": pem.read_text(), "B": "QUJD"}
    with pytest.raises(SystemExit):
        main(["--ed25519-key", "no-equals-sign"], runner=lambda **kw: pytest.fail("must not run"))
