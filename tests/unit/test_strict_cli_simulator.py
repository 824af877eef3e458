"""`propbot simulator` takes its key pair from the environment, never from flags (visible in `ps`)."""

from __future__ import annotations

from typing import Any

import pytest

import api.bootstrap
from api.cli import main


@pytest.mark.parametrize("flags", [["--api-key", "K", "--api-secret", "S"], ["--api-secret", "S"]])
def test_key_flags_are_refused_in_one_line(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulator", *flags]) == 2
    err = capsys.readouterr().err
    assert err == (
        "propbot: error: --api-key/--api-secret are not accepted (visible in ps): "
        "set PROPBOT_SIM_API_KEY and PROPBOT_SIM_API_SECRET\n"
    )


def test_the_environment_pair_reaches_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setenv("PROPBOT_SIM_API_KEY", "env-key")
    monkeypatch.setenv("PROPBOT_SIM_API_SECRET", "env-secret")
    from adapters.simulator import server

    real_main = server.main
    monkeypatch.setattr(
        api.bootstrap, "run_simulator", lambda argv: real_main(argv, runner=lambda **kw: calls.append(kw))
    )
    assert main(["simulator", "--port", "9999"]) == 0
    (kw,) = calls
    assert (kw["api_key"], kw["api_secret"], kw["port"]) == ("env-key", "env-secret", 9999)
