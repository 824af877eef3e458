"""A Binance-Spot-compatible exchange server on 127.0.0.1, for tests, demos and offline development.

create_simulator_app(engine, api_key, api_secret, ...) -> (Starlette app, SimulatorState)
SimulatorServer(api_key, api_secret, port=0, ...)     uvicorn in a thread; .base_url, .ws_url, .state
run_simulator(host, port, api_key, api_secret)        foreground server
main(argv)                                            `PROPBOT_SIM_API_KEY=K PROPBOT_SIM_API_SECRET=S propbot simulator --port N`
"""

from adapters.simulator.app import create_simulator_app
from adapters.simulator.server import SimulatorServer, main, run_simulator
from adapters.simulator.state import SimulatorState

__all__ = ["SimulatorServer", "SimulatorState", "create_simulator_app", "main", "run_simulator"]
