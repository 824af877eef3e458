"""The live profile's hard floor: https/wss to Binance's official hosts only, two-man rule and approval
tokens on; PROPBOT_LIVE_ALLOW_UNOFFICIAL_HOSTS=true lets a test rig use other hosts, loudly, and
never relaxes the approvals."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.cli import main
from api.settings import ConfigError, load_settings

KEYS = {"BINANCE_API_KEY_LIVE": "k", "BINANCE_API_SECRET_LIVE": "s"}
ALLOW = {"PROPBOT_LIVE_ALLOW_UNOFFICIAL_HOSTS": "true"}


def _live(tmp_path: Path, rest: str = "https://api.binance.com", ws: str = "wss://stream.binance.com:9443",
          **approvals: Any) -> Path:  # fmt: skip
    config = {
        "profile": "live",
        "exchange": "binance_spot",
        "routing": {"base_url_rest": rest, "base_url_ws": ws},
        "approvals": approvals,
    }
    path = tmp_path / "config.live.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "rest",
    [
        "https://api.binance.com",
        "https://api.binance.com/",
        "https://api.binance.com:443",
        "https://api-gcp.binance.com",
        "https://api1.binance.com",
        "https://api4.binance.com",
    ],
)
@pytest.mark.parametrize(
    "ws",
    [
        "wss://stream.binance.com:9443",
        "wss://stream.binance.com:443",
        "wss://data-stream.binance.vision",
        "wss://ws-api.binance.com:443",
        "wss://ws-api.binance.com:9443",
    ],
)
def test_official_hosts_load(tmp_path: Path, rest: str, ws: str) -> None:
    settings = load_settings(config_file=_live(tmp_path, rest, ws), env=KEYS, data_dir=tmp_path)
    assert (settings.rest_url, settings.ws_url, settings.unofficial_hosts) == (rest, ws, False)


@pytest.mark.parametrize(
    ("rest", "ws"),
    [
        ("https://api.binance.com.evil.example", "wss://stream.binance.com:9443"),
        ("https://api5.binance.com", "wss://stream.binance.com:9443"),
        ("https://api.binance.com:8443", "wss://stream.binance.com:9443"),
        ("https://api.binance.com/proxy", "wss://stream.binance.com:9443"),
        ("https://api.binance.com?x=1", "wss://stream.binance.com:9443"),
        ("https://API.BINANCE.COM", "wss://stream.binance.com:9443"),
        ("https://api.binance.com.", "wss://stream.binance.com:9443"),
        ("https://testnet.binance.vision", "wss://stream.testnet.binance.vision"),
        ("https://api.binance.com", "wss://stream.binance.com:1234"),
        ("https://api.binance.com", "wss://data-stream.binance.vision:9443"),
        ("https://api.binance.com", "wss://127.0.0.1:9443"),
    ],
)
def test_unofficial_hosts_are_refused(tmp_path: Path, rest: str, ws: str) -> None:
    with pytest.raises(ConfigError, match=r"official hosts .*PROPBOT_LIVE_ALLOW_UNOFFICIAL_HOSTS=true"):
        load_settings(config_file=_live(tmp_path, rest, ws), env=KEYS, data_dir=tmp_path)


@pytest.mark.parametrize(
    ("rest", "ws"),
    [
        ("http://api.binance.com", "wss://stream.binance.com:9443"),
        ("https://api.binance.com", "ws://stream.binance.com:9443"),
        ("https://user:pw@api.binance.com", "wss://stream.binance.com:9443"),
        ("http://127.0.0.1:8765", "ws://127.0.0.1:8765"),
    ],
)
def test_non_tls_urls_are_refused_even_with_the_override(tmp_path: Path, rest: str, ws: str) -> None:
    for env in (KEYS, {**KEYS, **ALLOW}):
        with pytest.raises(ConfigError, match=r"needs https:// .* and wss://"):
            load_settings(config_file=_live(tmp_path, rest, ws), env=env, data_dir=tmp_path)


@pytest.mark.parametrize("approvals", [{"two_man_rule": False}, {"require_token": False}])
def test_weakened_approvals_are_refused_even_with_the_override(
    tmp_path: Path, approvals: dict[str, bool]
) -> None:
    for env in (KEYS, {**KEYS, **ALLOW}):
        with pytest.raises(
            ConfigError, match=r"needs approvals\.two_man_rule and approvals\.require_token true"
        ):
            load_settings(config_file=_live(tmp_path, **approvals), env=env, data_dir=tmp_path)
    # testnet keeps its own choice
    path = tmp_path / "t.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "profile": "testnet",
                "exchange": "binance_spot",
                "routing": {"base_url_rest": "http://127.0.0.1:1", "base_url_ws": "ws://127.0.0.1:1"},
                "approvals": approvals,
            }
        )
    )
    env = {"BINANCE_API_KEY_TESTNET": "k", "BINANCE_API_SECRET_TESTNET": "s"}
    assert load_settings(config_file=path, env=env, data_dir=tmp_path).profile == "testnet"


def test_the_override_allows_a_test_rig_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _live(tmp_path, "https://rig.internal:8443", "wss://rig.internal:9443")
    with caplog.at_level(logging.WARNING, logger="api.settings"):
        settings = load_settings(config_file=path, env={**KEYS, **ALLOW}, data_dir=tmp_path)
    assert settings.unofficial_hosts is True
    assert settings.rest_url == "https://rig.internal:8443"
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "LIVE PROFILE ON UNOFFICIAL HOSTS" in record.getMessage()


@pytest.mark.parametrize("value", ["false", "1", "yes", "TRUE"])
def test_the_override_is_exactly_true(tmp_path: Path, value: str) -> None:
    path = _live(tmp_path, "https://rig.internal", "wss://rig.internal")
    env = {**KEYS, "PROPBOT_LIVE_ALLOW_UNOFFICIAL_HOSTS": value}
    with pytest.raises(ConfigError, match="PROPBOT_LIVE_ALLOW_UNOFFICIAL_HOSTS"):
        load_settings(config_file=path, env=env, data_dir=tmp_path)


def test_serve_refuses_an_unofficial_live_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for key, value in KEYS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PROPBOT_LIVE_ALLOW_UNOFFICIAL_HOSTS", raising=False)
    monkeypatch.setattr("uvicorn.Server.run", lambda *a, **k: pytest.fail("serve started"))
    path = _live(tmp_path, "https://api.binance.com", "wss://evil.example")
    assert main(["serve", "--config", str(path), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"propbot: error: {path}: the live profile routes only to Binance's official hosts")
    assert len(err.strip().splitlines()) == 1


def test_serve_warns_on_stderr_when_the_override_is_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for key, value in {**KEYS, **ALLOW}.items():
        monkeypatch.setenv(key, value)
    started: list[bool] = []
    monkeypatch.setattr("uvicorn.Server.run", lambda *a, **k: started.append(True))
    path = _live(tmp_path, "https://rig.internal", "wss://rig.internal")
    assert main(["serve", "--config", str(path), "--data-dir", str(tmp_path)]) == 0
    assert started == [True]
    assert "WARNING: LIVE profile routed to unofficial hosts" in capsys.readouterr().err


def test_the_shipped_live_config_passes_the_floor() -> None:
    settings = load_settings("live", env=KEYS)
    assert settings.unofficial_hosts is False
    assert settings.engine.approvals.two_man_rule
    assert settings.engine.approvals.require_token
