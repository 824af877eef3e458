"""The account an engine serves: one value from config, PROPBOT_ACCOUNT or --account (refused when they
disagree), its own journal schema on PostgreSQL, its own keys (never the profile-wide ones) and data
dir; the engine id stored in every row."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config_file import ConfigError
from api.settings import load_settings, locate

_TESTNET = (
    "profile: testnet\nexchange: binance_spot\nrouting:\n"
    '  base_url_rest: "https://testnet.binance.vision"\n'
    '  base_url_ws: "wss://stream.testnet.binance.vision"\n'
)
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
KEYS = {"BINANCE_API_KEY_TESTNET_DESK_A": "ka", "BINANCE_API_SECRET_TESTNET_DESK_A": "sa"}


def _config(tmp_path: Path, account: str | None = None, url: str | None = PG) -> Path:
    path = tmp_path / "c.yaml"
    text = (
        _TESTNET + (f"account: {account}\n" if account else "") + (f"journal:\n  url: {url}\n" if url else "")
    )
    path.write_text(text)
    return path


def test_the_account_picks_its_schema_keys_and_data_dir(tmp_path: Path) -> None:
    s = load_settings(config_file=_config(tmp_path, "desk_a"), env=KEYS)
    assert (s.account, s.journal_schema) == ("desk_a", "propbot_desk_a")
    assert s.db_url == f"{PG}?options=-csearch_path%3Dpropbot_desk_a"
    assert s.api_key is not None
    assert s.api_key.get_secret_value() == "ka"
    assert s.data_dir == Path("data") / "testnet" / "desk_a"


def test_an_account_never_falls_back_to_the_profile_wide_keys(tmp_path: Path) -> None:
    env = {"BINANCE_API_KEY_TESTNET": "k", "BINANCE_API_SECRET_TESTNET": "s"}
    with pytest.raises(ConfigError, match=r"account desk_a .* needs BINANCE_API_KEY_TESTNET_DESK_A"):
        load_settings(config_file=_config(tmp_path, "desk_a"), env=env)


@pytest.mark.parametrize(
    ("configured", "env", "flag"),
    [("desk_a", {"PROPBOT_ACCOUNT": "desk_b"}, None), ("desk_a", {}, "desk_b"), (None, {"PROPBOT_ACCOUNT": "desk_a"}, "desk_b")],
)  # fmt: skip
def test_two_sources_naming_different_accounts_are_refused(
    tmp_path: Path, configured: str | None, env: dict[str, str], flag: str | None
) -> None:
    with pytest.raises(ConfigError, match="the account is ambiguous"):
        locate(config_file=_config(tmp_path, configured), env=env, account=flag)


def test_the_same_account_everywhere_is_fine(tmp_path: Path) -> None:
    loc = locate(config_file=_config(tmp_path, "desk_a"), env={"PROPBOT_ACCOUNT": "desk_a"}, account="desk_a")
    assert loc.account == "desk_a"


@pytest.mark.parametrize("bad", ["Desk", "1desk", "desk-a", "d" * 31, ""])
def test_an_account_id_outside_the_pattern_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="account"):
        locate(config_file=_config(tmp_path), env={"PROPBOT_ACCOUNT": bad} if bad else {}, account=bad or "X")


def test_an_account_and_a_url_that_picks_a_schema_are_ambiguous(tmp_path: Path) -> None:
    url = f"{PG}?options=-csearch_path%3Dother"
    with pytest.raises(ConfigError, match="selects schema other and the account is desk_a"):
        locate(config_file=_config(tmp_path, "desk_a", url), env={})


def test_without_an_account_the_url_decides_the_schema(tmp_path: Path) -> None:
    assert locate(config_file=_config(tmp_path), env={}).journal_schema == "public"
    url = f"{PG}?options=-csearch_path%3Dother"
    assert locate(config_file=_config(tmp_path, url=url), env={}).journal_schema == "other"
    assert locate(config_file=_config(tmp_path, url=None), env={}).journal_schema is None  # SQLite


def test_the_engine_id_is_unique_per_process_or_configured(tmp_path: Path) -> None:
    env = {"BINANCE_API_KEY_TESTNET": "k", "BINANCE_API_SECRET_TESTNET": "s"}
    one, two = (load_settings(config_file=_config(tmp_path), env=env) for _ in range(2))
    assert one.engine_id != two.engine_id  # a start nonce: even one pid's two starts differ
    assert one.engine_id.count(":") == 2
    fixed = load_settings(config_file=_config(tmp_path), env={**env, "PROPBOT_ENGINE_ID": "desk-a.primary"})
    assert fixed.engine_id == "desk-a.primary"
    with pytest.raises(ConfigError, match="PROPBOT_ENGINE_ID"):
        load_settings(config_file=_config(tmp_path), env={**env, "PROPBOT_ENGINE_ID": "bad id\x1f"})
    with pytest.raises(ConfigError, match="at most 55 characters"):  # standbys read it from application_name
        load_settings(config_file=_config(tmp_path), env={**env, "PROPBOT_ENGINE_ID": "e" * 56})
    assert (
        load_settings(config_file=_config(tmp_path), env={**env, "PROPBOT_ENGINE_ID": "e" * 55}).engine_id
        == "e" * 55
    )
