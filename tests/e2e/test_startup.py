"""Start-up behaviour: first-run tokens, a tampered journal (503, not a crash), restart replay, the CLI."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from api.cli import main
from api.settings import ConfigError, load_settings
from tests.e2e.server import ApiServer, paper_settings


def test_first_paper_start_writes_private_tokens(tmp_path: Path) -> None:
    settings = paper_settings(tmp_path)
    with ApiServer(settings, tokens={}) as api:
        path = tmp_path / "tokens.txt"
        assert api.notices == [f"first start: operator tokens for admin and trader written to {path}"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        tokens = {
            line.split()[0]: line.split()[2]
            for line in path.read_text().splitlines()
            if not line.startswith("#")
        }
        assert set(tokens) == {"admin", "trader"}
        assert api.client(token=tokens["admin"]).post("/api/session/hold", json={}).status_code == 200
        assert api.client(token=tokens["trader"]).post("/api/session/resume").status_code == 403
        assert tokens["admin"] not in (tmp_path / "operators.json").read_text()  # only its hash is stored


def test_restart_replays_the_journal(tmp_path: Path) -> None:
    settings = paper_settings(tmp_path)
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001"}
    with ApiServer(settings) as api:
        tokens = api.tokens
        api.client("trader").post(
            "/api/live/order", json={**order, "price": "60000", "newClientOrderId": "pb-e2e-restart"}
        )
    with ApiServer(paper_settings(tmp_path), tokens=tokens) as api:
        # the paper venue forgot its book: reconciliation expired the resting order, journaled
        body = api.client("viewer").get("/api/orders/pb-e2e-restart").json()
        assert body["order"]["state"] == "EXPIRED"
        assert body["transitions"][-1]["actor"] == "reconciler"
        assert api.client("auditor").get("/api/journal/verify").status_code == 200


def test_tampered_journal_answers_503_naming_the_row(tmp_path: Path) -> None:
    settings = paper_settings(tmp_path)
    with ApiServer(settings) as api:
        tokens = api.tokens
        api.client("viewer").get("/api/live/ping")
    db = tmp_path / "journal.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER journal_no_update")  # the file's owner can drop the append-only trigger
        conn.execute("UPDATE journal SET actor = 'mallory' WHERE seq = 2")  # tampering, on purpose
    with ApiServer(paper_settings(tmp_path), tokens=tokens) as api:
        r = api.client("viewer").get("/api/live/ping")
        assert r.status_code == 503
        assert r.json()["reason"] == "journal_corrupt"
        assert r.json()["detail"]["seq"] == 2
        verify = api.client("auditor").get("/api/journal/verify")
        assert verify.status_code == 503
        assert verify.json()["detail"]["seq"] == 2
        status = api.client("viewer").get("/api/status").json()
        assert status["components"]["journal"]["status"] == "ERROR"
        metrics = api.client("viewer").get("/metrics").text  # what the alerting rules watch
        assert "propbot_journal_verify_failing 1.0" in metrics.splitlines()
        assert 'propbot_component_status{component="journal"} 2.0' in metrics.splitlines()
        assert api.client("viewer").get("/api/positions").json()["reason"] == "journal_corrupt"
        assert api.client().get("/healthz").status_code == 200
        assert api.client().get("/readyz").status_code == 503
    assert main(["journal", "verify", "--db", f"sqlite:///{db}"]) == 1


def test_cli_verify_show_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = paper_settings(tmp_path)
    with ApiServer(settings) as api:
        api.client("trader").post(
            "/api/live/order",
            json={
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "MARKET",
                "quantity": "0.001",
                "newClientOrderId": "pb-e2e-cli",
            },
        )
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    capsys.readouterr()
    assert main(["journal", "verify", "--db", url]) == 0
    assert capsys.readouterr().out.startswith("journal OK: ")
    assert main(["journal", "show", "--order", "pb-e2e-cli", "--db", url]) == 0
    assert [line.split()[3] for line in capsys.readouterr().out.splitlines()] == [
        "create",
        "preflight",
        "send",
        "fill",
    ]
    assert main(["journal", "export", "--format", "csv", "--db", url]) == 0
    assert capsys.readouterr().out.startswith("seq,stream,stream_id,")


@pytest.mark.parametrize(
    "argv",
    [
        ["journal", "verify", "--db", "sqlite:////nonexistent/dir/journal.db"],
        ["journal", "show", "--order"],
        ["operators", "add", "bad id!", "--role", "admin"],
        ["operators", "add", "carol", "--role", "root"],
        ["serve", "--profile", "moon"],
        ["approve", "--key", "/nonexistent.pem", "--approver", "a", "--session", "testnet"],
        ["no-such-command"],
    ],
)
def test_cli_errors_are_one_line_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("propbot: error: ")
    assert "Traceback" not in err


def test_env_file_errors_name_the_line_but_never_the_value(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"SAFE_MODE=true\nBINANCE_API_SECRET_TESTNET=s3cr\xc3\xa9t\n")
    with pytest.raises(ConfigError, match=r"line 2: non-ASCII") as info:
        load_settings("paper", env={}, env_file=env_file)
    assert "s3cr" not in str(info.value)
    env_file.write_text("SAFE_MODE=true\njust-a-line-of-text\n")
    with pytest.raises(ConfigError, match="line 2: expected KEY=VALUE"):
        load_settings("paper", env={}, env_file=env_file)


def test_secrets_never_print(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# keys\nBINANCE_API_KEY_TESTNET=key-abc\nBINANCE_API_SECRET_TESTNET='very-secret-1'\n"
        "SAFE_MODE=true   # default\nEXCHANGE_PROFILE=testnet\n"
    )
    settings = load_settings(env={}, env_file=env_file, data_dir=tmp_path)
    assert settings.profile == "testnet"
    assert settings.safe_mode is True
    assert settings.api_secret is not None
    assert settings.api_secret.get_secret_value() == "very-secret-1"
    assert "very-secret-1" not in repr(settings)
    assert "key-abc" not in repr(settings)
    assert "very-secret-1" not in str(settings.api_secret)


def test_paper_loads_no_keys_and_safe_mode_flips_only_explicitly(tmp_path: Path) -> None:
    env = {"BINANCE_API_KEY_TESTNET": "k", "BINANCE_API_SECRET_TESTNET": "s"}
    paper = load_settings("paper", env=env, data_dir=tmp_path)
    assert paper.api_key is None
    assert paper.api_secret is None
    assert load_settings("testnet", env=env).safe_mode is True
    assert load_settings("testnet", env={**env, "SAFE_MODE": "false"}).safe_mode is False
    with pytest.raises(ConfigError, match="SAFE_MODE must be true or false"):
        load_settings("testnet", env={**env, "SAFE_MODE": "maybe"})
    with pytest.raises(ConfigError, match="BINANCE_API_KEY_LIVE"):
        load_settings("live", env=env)


def test_shipped_configs_use_the_official_urls() -> None:
    env = {f"BINANCE_API_{k}_{p}": "x" for k in ("KEY", "SECRET") for p in ("TESTNET", "LIVE")}
    testnet, live = load_settings("testnet", env=env), load_settings("live", env=env)
    assert (testnet.rest_url, testnet.ws_url) == (
        "https://testnet.binance.vision",
        "wss://stream.testnet.binance.vision",
    )
    assert (live.rest_url, live.ws_url) == ("https://api.binance.com", "wss://stream.binance.com:9443")
    for s in (testnet, live, load_settings("paper", env={})):
        assert s.safe_mode is True
        assert s.engine.preflight.permissions_required == ("SPOT_TRADE",)
        assert s.engine.approvals.two_man_rule
        assert s.engine.approvals.require_token
    assert testnet.engine.preflight.time_skew_ms_max == 250
    assert live.engine.preflight.time_skew_ms_max == 150


def test_config_typos_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("profile: paper\nexchange: paper\nsafe_mod: false\n")
    with pytest.raises(ConfigError, match="safe_mod"):
        load_settings(config_file=path, env={})
