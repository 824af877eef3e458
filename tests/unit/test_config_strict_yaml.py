"""Config YAML fails closed: duplicate keys at any depth, YAML 1.1 booleans (yes/no/on/off/0/1) and
strings for booleans are errors, and every error names the file and the line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.config_file import ConfigError, load_config_file

_BASE = "profile: paper\nexchange: paper\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def _refused(path: Path, pattern: str) -> str:
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}{pattern}") as info:
        load_config_file(path)
    return str(info.value)


def test_a_duplicate_top_level_key_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, _BASE + "safe_mode: true\nsymbols: [BTCUSDT]\nsafe_mode: false\n")
    _refused(path, r" line 5: found duplicate key 'safe_mode'$")


def test_a_duplicate_nested_key_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _BASE + "approvals:\n  two_man_rule: true\n  ttl_s: 60\n  two_man_rule: false\n")
    _refused(path, r" line 6: found duplicate key 'two_man_rule'$")


def test_a_duplicate_key_in_a_flow_mapping_inside_a_list_is_refused(tmp_path: Path) -> None:
    text = (
        _BASE + 'preflight:\n  maintenance_windows:\n    - {start: "23:55", end: "00:05", start: "01:00"}\n'
    )
    _refused(_write(tmp_path, text), r" line 5: found duplicate key 'start'$")


@pytest.mark.parametrize(
    "value", ["yes", "no", "on", "off", "y", "n", "0", "1", "True", "FALSE", '"false"', "'no'"]
)
def test_booleans_are_exactly_true_or_false(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, _BASE + f"symbols: [BTCUSDT]\nsafe_mode: {value}\n")
    _refused(path, r" line 4: safe_mode: Input should be a valid boolean$")


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("approvals:\n  two_man_rule: no\n", 4, "approvals.two_man_rule"),
        ("approvals:\n  require_token: off\n", 4, "approvals.require_token"),
        ("ws:\n  enabled: 1\n", 4, "ws.enabled"),
        ("ws:\n  cancel_on_disconnect: 'true'\n", 4, "ws.cancel_on_disconnect"),
    ],
)
def test_nested_booleans_are_strict(tmp_path: Path, text: str, line: int, field: str) -> None:
    _refused(
        _write(tmp_path, _BASE + text), rf" line {line}: {re.escape(field)}: Input should be a valid boolean"
    )


def test_an_explicit_bool_tag_with_a_yaml11_value_is_refused(tmp_path: Path) -> None:
    _refused(
        _write(tmp_path, _BASE + "safe_mode: !!bool yes\n"), r" line 3: a boolean must be true or false$"
    )


def test_true_and_false_still_work(tmp_path: Path) -> None:
    cfg = load_config_file(_write(tmp_path, _BASE + "safe_mode: false\nws:\n  enabled: true\n"))
    assert cfg.safe_mode is False
    assert cfg.ws.enabled is True


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    _refused(_write(tmp_path, _BASE + "symbols: [BTCUSDT\nrisk: {}\n"), r" line \d+: ")
    _refused(_write(tmp_path, _BASE + "risk:\n  max_open_orders: 5\n bad: 1\n"), r" line 5: ")


def test_an_unknown_key_names_its_line(tmp_path: Path) -> None:
    _refused(_write(tmp_path, _BASE + "\n\nrisk:\n  max_open_order: 5\n"), r" line 6: risk.max_open_order: ")


def test_the_shipped_configs_still_load() -> None:
    root = Path(__file__).resolve().parents[2] / "configs"
    for name in ("paper", "testnet", "live"):
        assert load_config_file(root / f"config.{name}.yaml").profile == name


def test_a_bad_decimal_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = _refused(
        _write(tmp_path, _BASE + "risk:\n  max_order_qty: 'sekrit-value'\n"), r" line 4: risk.max_order_qty: "
    )
    assert "sekrit" not in text


def test_consistency_errors_name_the_line(tmp_path: Path) -> None:
    _refused(
        _write(tmp_path, "profile: paper\n\nexchange: binance_spot\n"), r" line 3: profile paper cannot use"
    )
    text = _BASE + "ws:\n  error_after_s: 5\n  stall_after_s: 9\n"
    _refused(_write(tmp_path, text), r" line 5: ws.stall_after_s must be less than ws.error_after_s$")
