from __future__ import annotations

import adapters.paper
import adapters.venue


def test_public_surfaces() -> None:
    assert sorted(adapters.venue.__all__) == [
        "DEFAULT_BALANCES",
        "DEFAULT_PRICES",
        "DEFAULT_SYMBOLS",
        "MatchingEngine",
        "VenueError",
        "exchange_info_symbol",
    ]
    assert sorted(adapters.paper.__all__) == ["PaperExchange", "to_engine_error"]
    for module in (adapters.venue, adapters.paper):
        for name in module.__all__:
            assert getattr(module, name) is not None
