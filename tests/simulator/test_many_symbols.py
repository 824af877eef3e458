"""exchangeInfo of a real venue's size: `extra_symbols` adds generated TRADING symbols; the Binance adapter
parses them all, and they trade like the defaults."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from adapters.binance.rest import BinanceSpotClient
from adapters.binance.schemas import symbol_rules_from_json
from adapters.simulator.server import SimulatorServer, main
from adapters.venue import MatchingEngine


@pytest.fixture(scope="module")
def big_sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(extra_symbols=300, driver_interval_s=3600) as server:
        yield server


async def test_exchange_info_lists_hundreds_of_symbols_and_they_trade(big_sim: SimulatorServer) -> None:
    urls = {"rest": big_sim.base_url, "ws": big_sim.ws_url}
    client = BinanceSpotClient("testnet", big_sim.api_key, big_sim.api_secret, urls)
    try:
        info = await client.exchange_info()
        names = [s["symbol"] for s in info["symbols"]]
        assert len(names) == 303
        assert {"BTCUSDT", "S001USDT", "S300USDT"} <= set(names)
        rules = {r.symbol: r for r in map(symbol_rules_from_json, info["symbols"])}
        assert rules["S150USDT"].status == "TRADING"
        assert rules["S150USDT"].quote_asset == "USDT"
        price = big_sim.state.engine.prices["S150USDT"]
        placed = await client.order(
            {"symbol": "S150USDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1.000",
             "price": f"{price * Decimal('0.9'):.2f}"}
        )  # fmt: skip
        assert placed["status"] == "NEW"
    finally:
        await client.aclose()


def test_extra_symbols_are_bounded_and_need_the_default_engine() -> None:
    with pytest.raises(ValueError):
        SimulatorServer(extra_symbols=-1)
    with pytest.raises(ValueError):
        SimulatorServer(extra_symbols=5, engine=MatchingEngine())


def test_main_passes_extra_symbols() -> None:
    calls: list[dict[str, object]] = []
    main(["--extra-symbols", "250"], runner=lambda **kw: calls.append(kw))
    assert calls[0]["extra_symbols"] == 250
    with pytest.raises(SystemExit):
        main(["--extra-symbols", "99999"], runner=lambda **kw: pytest.fail("must not run"))
