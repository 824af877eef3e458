"""The `.env` reader and the environment fail closed: odd line breaks, control characters, empty
values, duplicate keys and loose booleans are errors that name the file and line, never the value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.dotenv import EnvFileError, parse_env_text, read_env_file
from api.settings import ConfigError, load_settings

# Every separator str.splitlines() honours besides "\n" and "\r\n"
_ODD_BREAKS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r"]


@pytest.mark.parametrize("sep", _ODD_BREAKS)
def test_a_setting_hidden_after_an_odd_line_break_is_refused(sep: str) -> None:
    text = f"SAFE_MODE=true\n# a harmless comment{sep}SAFE_MODE=false\n"
    with pytest.raises(EnvFileError, match=r"^\.env line 2: (control|non-ASCII) character"):
        parse_env_text(text)


def test_a_hidden_setting_in_a_file_is_refused_before_it_takes_effect(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"SAFE_MODE=true\n# note\x1cSAFE_MODE=false\n")
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(env_file))} line 2: control character at column 7$"
    ):
        load_settings("paper", env={}, env_file=env_file)


def test_crlf_and_lf_files_read_the_same() -> None:
    assert parse_env_text("A=1\r\nB='two'\r\n\r\n# c\r\n") == parse_env_text("A=1\nB='two'\n\n# c\n")
    assert parse_env_text("A=1\r\nB='two'\r\n") == {"A": "1", "B": "two"}


def test_a_lone_carriage_return_is_refused() -> None:
    with pytest.raises(EnvFileError, match="line 1: control character at column 4"):
        parse_env_text("A=1\rB=2\n")


@pytest.mark.parametrize("ch", ["\x00", "\x07", "\x1b", "\x7f"])
def test_control_characters_are_refused_without_echoing_the_value(ch: str) -> None:
    with pytest.raises(EnvFileError, match="line 2: control character") as info:
        parse_env_text(f"A=1\nSECRET=hunter{ch}2\n")
    assert "hunter" not in str(info.value)


def test_a_tab_is_still_allowed() -> None:
    assert parse_env_text("A=\t1\t# note\n") == {"A": "1"}


@pytest.mark.parametrize("line", ["SAFE_MODE=", "SAFE_MODE=  ", "SAFE_MODE=''", 'SAFE_MODE=""'])
def test_an_empty_value_is_refused(line: str) -> None:
    with pytest.raises(EnvFileError, match=r"^f line 3: SAFE_MODE has an empty value$"):
        parse_env_text(f"# c\nA=1\n{line}\n", "f")


def test_a_duplicate_key_is_refused_without_the_value() -> None:
    with pytest.raises(EnvFileError, match="line 3: SAFE_MODE is set twice") as info:
        parse_env_text("SAFE_MODE=true\nA=1\nexport SAFE_MODE=sekrit\n")
    assert "sekrit" not in str(info.value)


def test_read_env_file_names_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / "x.env"
    env_file.write_bytes(b"A=1\r\nA=2\r\n")
    with pytest.raises(EnvFileError, match=rf"^{re.escape(str(env_file))} line 2: A is set twice$"):
        read_env_file(env_file)


def test_an_empty_process_variable_is_an_error_not_an_override(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SAFE_MODE=false\n")
    env = {"BINANCE_API_KEY_TESTNET": "k", "BINANCE_API_SECRET_TESTNET": "s"}
    assert load_settings("testnet", env=env, env_file=env_file).safe_mode is False
    for key in ("SAFE_MODE", "EXCHANGE_PROFILE", "PROPBOT_DATA_DIR", "BINANCE_API_SECRET_TESTNET"):
        with pytest.raises(ConfigError, match=f"^environment variable {key} is set but empty"):
            load_settings("testnet", env={**env, key: ""}, env_file=env_file)
    with pytest.raises(ConfigError, match="SAFE_MODE is set but empty"):
        load_settings("testnet", env={**env, "SAFE_MODE": " "})
    # variables PropBot does not read may be empty
    assert load_settings("testnet", env={**env, "UNRELATED": ""}).safe_mode is True


@pytest.mark.parametrize("value", ["1", "0", "yes", "no", "on", "off", "True", "FALSE", " false", "false "])
def test_safe_mode_is_exactly_true_or_false(value: str) -> None:
    env = {"BINANCE_API_KEY_TESTNET": "k", "BINANCE_API_SECRET_TESTNET": "s", "SAFE_MODE": value}
    with pytest.raises(ConfigError, match=r"^SAFE_MODE must be true or false$"):
        load_settings("testnet", env=env)


def test_safe_mode_true_and_false_are_honoured() -> None:
    env = {"BINANCE_API_KEY_TESTNET": "k", "BINANCE_API_SECRET_TESTNET": "s"}
    assert load_settings("testnet", env={**env, "SAFE_MODE": "false"}).safe_mode is False
    assert load_settings("testnet", env={**env, "SAFE_MODE": "true"}).safe_mode is True


@pytest.mark.parametrize("line", ["SAFE_MODE= # false", "SAFE_MODE=#false"])
def test_an_unquoted_value_starting_with_a_hash_is_refused(line: str) -> None:
    with pytest.raises(EnvFileError, match=r"^\.env line 1: an unquoted value must not start with #$"):
        parse_env_text(line)
    assert parse_env_text("K='#x'") == {"K": "#x"}
