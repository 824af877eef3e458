"""binance.key_type (HMAC | ED25519) and binance.self_trade_prevention_mode: good values load, anything
else is refused naming the file and line; an Ed25519 private key comes from the environment or from a
key file that only its owner may read, and no error or repr ever shows it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from api.config_file import ConfigError, load_config_file
from api.settings import load_settings

_TESTNET = (
    "profile: testnet\nexchange: binance_spot\nrouting:\n"
    '  base_url_rest: "https://testnet.binance.vision"\n'
    '  base_url_ws: "wss://stream.testnet.binance.vision"\n'
)
_PEM = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
_BODY = _PEM.splitlines()[1]  # the key material: never in a message or a repr
_KEY = {"BINANCE_API_KEY_TESTNET": "k"}


def _write(tmp_path: Path, binance: str = "") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(_TESTNET + (f"binance:\n{binance}" if binance else ""))
    return path


def _key_file(tmp_path: Path, mode: int = 0o600, text: str = _PEM) -> Path:
    path = tmp_path / "ed25519.pem"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_defaults_are_hmac_and_the_venues_stp_mode(tmp_path: Path) -> None:
    cfg = load_config_file(_write(tmp_path))
    assert (cfg.binance.key_type, cfg.binance.self_trade_prevention_mode) == ("HMAC", None)
    settings = load_settings(config_file=_write(tmp_path), env={**_KEY, "BINANCE_API_SECRET_TESTNET": "s"})
    assert (settings.key_type, settings.stp_mode) == ("HMAC", None)


@pytest.mark.parametrize(
    "mode", ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT", "TRANSFER"]
)
def test_every_stp_mode_of_enums_md_loads(tmp_path: Path, mode: str) -> None:
    path = _write(tmp_path, f"  self_trade_prevention_mode: {mode}\n")
    assert load_config_file(path).binance.self_trade_prevention_mode == mode
    env = {**_KEY, "BINANCE_API_SECRET_TESTNET": "s"}
    assert load_settings(config_file=path, env=env).stp_mode == mode


@pytest.mark.parametrize("value", ["expire_taker", "EXPIRE", "BOTH", "''", "1", "true", "[NONE]"])
def test_an_unknown_stp_mode_is_refused_naming_the_line(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, f"  recv_window_ms: 5000\n  self_trade_prevention_mode: {value}\n")
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(path))} line 8: binance.self_trade_prevention_mode: "
    ):
        load_config_file(path)


@pytest.mark.parametrize("value", ["hmac", "Ed25519", "RSA", "ED-25519", "''", "null", "1"])
def test_an_unknown_key_type_is_refused_naming_the_line(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, f"  key_type: {value}\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))} line 7: binance.key_type: "):
        load_config_file(path)


def test_an_ed25519_key_from_the_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, "  key_type: ED25519\n")
    settings = load_settings(config_file=path, env={**_KEY, "BINANCE_API_SECRET_TESTNET": _PEM})
    assert settings.key_type == "ED25519"
    assert settings.api_secret is not None
    assert settings.api_secret.get_secret_value() == _PEM
    assert _BODY not in repr(settings)
    assert _BODY not in str(settings)


def test_a_one_line_pem_with_literal_backslash_n_as_dotenv_holds_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "  key_type: ED25519\n")
    one_line = _PEM.replace("\n", "\\n")
    settings = load_settings(config_file=path, env={**_KEY, "BINANCE_API_SECRET_TESTNET": one_line})
    assert settings.api_secret is not None
    assert settings.api_secret.get_secret_value() == _PEM


def test_an_ed25519_key_from_an_owner_only_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "  key_type: ED25519\n")
    env = {**_KEY, "BINANCE_API_PRIVATE_KEY_FILE_TESTNET": str(_key_file(tmp_path, 0o400))}
    settings = load_settings(config_file=path, env=env)
    assert settings.api_secret is not None
    assert settings.api_secret.get_secret_value() == _PEM


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610])
def test_a_key_file_group_or_others_may_use_is_refused(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path, "  key_type: ED25519\n")
    key = _key_file(tmp_path, mode)
    env = {**_KEY, "BINANCE_API_PRIVATE_KEY_FILE_TESTNET": str(key)}
    with pytest.raises(ConfigError, match=r"accessible by group or others .*chmod 600") as info:
        load_settings(config_file=path, env=env)
    assert _BODY not in str(info.value)


def test_a_symlinked_or_missing_key_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "  key_type: ED25519\n")
    link = tmp_path / "link.pem"
    link.symlink_to(_key_file(tmp_path))
    for target in (link, tmp_path / "absent.pem"):
        with pytest.raises(ConfigError, match=r"BINANCE_API_PRIVATE_KEY_FILE_TESTNET: .*cannot read"):
            load_settings(config_file=path, env={**_KEY, "BINANCE_API_PRIVATE_KEY_FILE_TESTNET": str(target)})


def test_a_key_that_is_not_an_ed25519_pem_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "  key_type: ED25519\n")
    for secret in ("hmac-secret-value-123", _PEM.replace("A", "B", 3)):
        env = {**_KEY, "BINANCE_API_SECRET_TESTNET": secret}
        with pytest.raises(
            ConfigError, match=r"^BINANCE_API_SECRET_TESTNET is not an unencrypted Ed25519"
        ) as info:
            load_settings(config_file=path, env=env)
        assert secret not in str(info.value)
        assert "hmac-secret" not in str(info.value)
    env = {**_KEY, "BINANCE_API_PRIVATE_KEY_FILE_TESTNET": str(_key_file(tmp_path, text="not a key\n"))}
    with pytest.raises(ConfigError, match=r"^BINANCE_API_PRIVATE_KEY_FILE_TESTNET is not an unencrypted"):
        load_settings(config_file=path, env=env)


def test_a_key_file_with_hmac_or_beside_a_secret_is_ambiguous_and_refused(tmp_path: Path) -> None:
    key = str(_key_file(tmp_path))
    env = {**_KEY, "BINANCE_API_SECRET_TESTNET": "s", "BINANCE_API_PRIVATE_KEY_FILE_TESTNET": key}
    with pytest.raises(ConfigError, match=r"for binance\.key_type ED25519 only"):
        load_settings(config_file=_write(tmp_path), env=env)
    env = {**_KEY, "BINANCE_API_SECRET_TESTNET": _PEM, "BINANCE_API_PRIVATE_KEY_FILE_TESTNET": key}
    with pytest.raises(ConfigError, match="not both"):
        load_settings(config_file=_write(tmp_path, "  key_type: ED25519\n"), env=env)


def test_ed25519_without_any_key_names_both_places(tmp_path: Path) -> None:
    path = _write(tmp_path, "  key_type: ED25519\n")
    with pytest.raises(
        ConfigError, match="BINANCE_API_SECRET_TESTNET \\(or BINANCE_API_PRIVATE_KEY_FILE_TESTNET\\)"
    ):
        load_settings(config_file=path, env=_KEY)
