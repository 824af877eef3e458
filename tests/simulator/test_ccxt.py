"""A published Binance client (ccxt) against the simulator, changing only its URLs and documented options.

Options turned off, each through ccxt's own documented settings (no patching):
- options["fetchCurrencies"] = False: fetchCurrencies calls /sapi/v1/capital/config/getall (not on Spot Testnet).
- options["fetchMarkets"] = {"types": ["spot"]}: the default also loads USDⓈ-M/COIN-M futures (fapi/dapi hosts).
- options["fetchMargins"] = False: with keys set, loading spot markets also calls /sapi/v1/margin/allPairs and
  /sapi/v1/margin/isolated/allPairs.
"""

from __future__ import annotations

import ccxt
import pytest

from adapters.simulator.server import SimulatorServer
from tests.simulator.helpers import KEY, SECRET


@pytest.fixture
def exchange(sim: SimulatorServer) -> ccxt.binance:
    ex = ccxt.binance({"apiKey": KEY, "secret": SECRET})
    # every Spot REST base URL ccxt knows points at the simulator; nothing else can be reached from here
    for name in ("public", "private"):
        ex.urls["api"][name] = f"{sim.base_url}/api/v3"
    ex.urls["api"]["v1"] = f"{sim.base_url}/api/v1"
    for name in [n for n in ex.urls["api"] if n.startswith(("sapi", "fapi", "dapi", "eapi", "papi"))]:
        ex.urls["api"][name] = (
            f"{sim.base_url}/{name}"  # a /sapi... call would 404 here, not leave the machine
        )
    ex.options["fetchCurrencies"] = False
    ex.options["fetchMarkets"] = {"types": ["spot"]}
    ex.options["fetchMargins"] = False
    return ex


def test_ccxt_full_round(exchange: ccxt.binance, sim: SimulatorServer) -> None:
    markets = exchange.load_markets()
    assert {"BTC/USDT", "ETH/USDT", "BNB/USDT"} <= set(markets)
    btc = markets["BTC/USDT"]
    assert btc["precision"]["price"] == pytest.approx(0.01)
    assert btc["limits"]["cost"]["min"] == pytest.approx(5)

    balance = exchange.fetch_balance()
    assert balance["total"]["USDT"] == pytest.approx(100000)

    exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 60000, {"test": True})
    truth = sim.state
    assert (truth.test_orders, truth.real_orders) == (1, 0)

    order = exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 60000)
    assert order["status"] == "open"
    assert order["clientOrderId"]  # ccxt sends its own newClientOrderId; the engine keeps it
    assert [o["id"] for o in exchange.fetch_open_orders("BTC/USDT")] == [order["id"]]
    fetched = exchange.fetch_order(order["id"], "BTC/USDT")
    assert (fetched["status"], fetched["price"], fetched["amount"]) == ("open", 60000, 0.001)
    canceled = exchange.cancel_order(order["id"], "BTC/USDT")
    assert canceled["status"] == "canceled"
    assert exchange.fetch_open_orders("BTC/USDT") == []
    assert [o["clientOrderId"] for o in sim.state.engine.ground_truth()] == [order["clientOrderId"]]


def test_ccxt_maps_simulator_errors_to_its_exception_classes(exchange: ccxt.binance) -> None:
    exchange.load_markets()
    with pytest.raises(ccxt.OrderNotFound):
        exchange.fetch_order("424242", "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound):
        exchange.cancel_order("424242", "BTC/USDT")
    with pytest.raises(ccxt.InsufficientFunds):
        exchange.create_order("BTC/USDT", "limit", "buy", 100, 60000)
    bad = ccxt.binance({"apiKey": KEY, "secret": "wrong", "urls": exchange.urls, "options": exchange.options})
    bad.markets, bad.markets_by_id, bad.symbols = exchange.markets, exchange.markets_by_id, exchange.symbols
    with pytest.raises(ccxt.AuthenticationError):
        bad.fetch_balance()
