"""binance.client_order_id_prefix and binance.hold_on_foreign_orders: a valid prefix reaches the engine,
anything outside Binance's id alphabet or too long to leave 16 random characters is refused naming the
file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config_file import ConfigError
from api.settings import load_settings

_TESTNET = (
    "profile: testnet\nexchange: binance_spot\nrouting:\n"
    '  base_url_rest: "https://testnet.binance.vision"\n'
    '  base_url_ws: "wss://stream.testnet.binance.vision"\n'
)
_ENV = {"BINANCE_API_KEY_TESTNET": "k", "BINANCE_API_SECRET_TESTNET": "s"}


def _write(tmp_path: Path, binance: str = "") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(_TESTNET + (f"binance:\n{binance}" if binance else ""))
    return path


def test_the_default_prefix_and_no_hold(tmp_path: Path) -> None:
    engine = load_settings(config_file=_write(tmp_path), env=_ENV).engine
    assert (engine.client_order_id_prefix, engine.hold_on_foreign_orders) == ("pb-", False)


def test_a_configured_prefix_and_hold_reach_the_engine(tmp_path: Path) -> None:
    path = _write(tmp_path, "  client_order_id_prefix: desk-7_\n  hold_on_foreign_orders: true\n")
    engine = load_settings(config_file=path, env=_ENV).engine
    assert (engine.client_order_id_prefix, engine.hold_on_foreign_orders) == ("desk-7_", True)


@pytest.mark.parametrize("value", ["''", "pb.", "a/b", "p" * 21, "'pb '", "é", "1", "[pb]"])
def test_a_bad_prefix_is_refused_naming_the_line(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, f"  recv_window_ms: 5000\n  client_order_id_prefix: {value}\n")
    with pytest.raises(ConfigError, match=r"line 8: binance.client_order_id_prefix: "):
        load_settings(config_file=path, env=_ENV)
