"""Run the simulator: in the foreground (`propbot simulator`, `main(argv)`) or in a thread for tests.

The simulator only ever binds loopback addresses: it is a stand-in for Binance on this machine, not a
service for the network.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from adapters.simulator.app import create_simulator_app
from adapters.simulator.state import SimulatorState

_START_TIMEOUT_S = 10.0


def _check_loopback(host: str) -> None:
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the simulator binds loopback addresses only, was {host}")


class _Server(uvicorn.Server):
    """uvicorn.Server that sends Binance's serverShutdown event before uvicorn closes the WebSockets."""

    def __init__(self, config: uvicorn.Config, state: SimulatorState) -> None:
        super().__init__(config)
        self.sim_state = state

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.sim_state.hub is not None:
            await self.sim_state.hub.shutdown()
        ws_api = getattr(getattr(self.config.app, "state", None), "ws_api", None)
        if ws_api is not None:  # the WebSocket API's connections get serverShutdown too
            await ws_api.shutdown()
        await super().shutdown(sockets=sockets)


def _config(
    app: Any, host: str, port: int, ws_ping_interval: float, ws_ping_timeout: float
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="websockets-sansio",
        ws_ping_interval=ws_ping_interval,
        ws_ping_timeout=ws_ping_timeout,
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=2,
    )


class SimulatorServer:
    """uvicorn in a background thread, for tests: `with SimulatorServer() as sim: httpx.get(sim.base_url + ...)`.

    Keyword arguments other than host/port/ping settings go to create_simulator_app.
    """

    def __init__(
        self,
        api_key: str = "simkey",
        api_secret: str = "simsecret",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_ping_interval: float = 20.0,
        ws_ping_timeout: float = 60.0,
        **app_kwargs: Any,
    ) -> None:
        _check_loopback(host)
        self.api_key, self.api_secret = api_key, api_secret
        app_kwargs.setdefault("engine", None)
        self.app, self.state = create_simulator_app(api_key=api_key, api_secret=api_secret, **app_kwargs)
        self._server = _Server(_config(self.app, host, port, ws_ping_interval, ws_ping_timeout), self.state)
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def start(self) -> SimulatorServer:
        """Start serving and wait until the socket is bound.

        Raises:
            RuntimeError: the server did not start within 10 s.
        """
        self._thread = threading.Thread(target=self._server.run, name="binance-simulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("simulator did not start")
            time.sleep(0.01)
        sockets = self._server.servers[0].sockets
        self.port = sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_simulator(
    host: str = "127.0.0.1",
    port: int = 8765,
    api_key: str = "simkey",
    api_secret: str = "simsecret",
    *,
    ws_ping_interval: float = 20.0,
    **app_kwargs: Any,
) -> SimulatorState:
    """Serve in the foreground until interrupted; returns the state for inspection afterwards."""
    _check_loopback(host)
    app, state = create_simulator_app(api_key=api_key, api_secret=api_secret, **app_kwargs)
    _Server(_config(app, host, port, ws_ping_interval, 60.0), state).run()
    return state


KEY_ENV, SECRET_ENV = "PROPBOT_SIM_API_KEY", "PROPBOT_SIM_API_SECRET"


def main(
    argv: Sequence[str] | None = None,
    *,
    runner: Callable[..., Any] = run_simulator,
    env: Mapping[str, str] | None = None,
) -> int:
    """`propbot simulator --port N`, the key pair from $PROPBOT_SIM_API_KEY / $PROPBOT_SIM_API_SECRET
    (command-line flags would show the secret in `ps`); a fresh pair is printed when neither is set."""
    parser = argparse.ArgumentParser(
        prog="propbot simulator",
        description=f"Binance-Spot-compatible simulator; keys from ${KEY_ENV} and ${SECRET_ENV}",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765)
    # Still parsed, only to say where the keys go now
    parser.add_argument("--api-key", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--api-secret", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--weight-limit", type=int, default=6000)
    parser.add_argument("--ws-ping-interval", type=float, default=20.0)
    parser.add_argument(
        "--ed25519-key",
        action="append",
        default=[],
        metavar="API_KEY=PUBLIC_KEY",
        help="register an Ed25519 API key; PUBLIC_KEY is a PEM file or base64 of the raw key (repeatable)",
    )
    parser.add_argument(
        "--quiet-market", action="store_true", help="prices do not move by themselves (POST /_sim/market)"
    )
    parser.add_argument(
        "--extra-symbols", type=int, default=0, help="add N generated symbols (S001USDT, ...) to exchangeInfo"
    )
    args = parser.parse_args(argv)
    if args.api_key is not None or args.api_secret is not None:
        parser.error(
            f"--api-key/--api-secret are not accepted (visible in ps): set {KEY_ENV} and {SECRET_ENV}"
        )
    environ = os.environ if env is None else env
    given_key, given_secret = environ.get(KEY_ENV), environ.get(SECRET_ENV)
    if (given_key is None) != (given_secret is None):
        parser.error(f"set both {KEY_ENV} and {SECRET_ENV}, or neither")
    if (
        given_key is not None
        and given_secret is not None
        and not (given_key.strip() and given_secret.strip())
    ):
        parser.error(f"{KEY_ENV} and {SECRET_ENV} must not be empty")
    if not 0 <= args.extra_symbols <= 5000:
        parser.error("--extra-symbols must be in 0..5000")
    ed25519_keys: dict[str, str] = {}
    for item in args.ed25519_key:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            parser.error(f"--ed25519-key wants API_KEY=PUBLIC_KEY, was {item!r}")
        if not value.strip().startswith("-----BEGIN") and Path(value).is_file():
            value = Path(value).read_text()
        ed25519_keys[name] = value
    try:
        _check_loopback(args.host)
    except ValueError as exc:
        parser.error(str(exc))
    key = given_key or secrets.token_hex(32)
    secret = given_secret or secrets.token_hex(32)
    if given_key is None:
        print(f"generated API key:    {key}\ngenerated API secret: {secret}")
    print(f"Binance simulator on http://{args.host}:{args.port} (REST /api/v3, streams /ws, admin /_sim)")
    runner(
        host=args.host,
        port=args.port,
        api_key=key,
        api_secret=secret,
        ws_ping_interval=args.ws_ping_interval,
        weight_limit=args.weight_limit,
        **({"ed25519_keys": ed25519_keys} if ed25519_keys else {}),
        **({"quiet_market": True} if args.quiet_market else {}),
        **({"extra_symbols": args.extra_symbols} if args.extra_symbols else {}),
    )
    return 0
