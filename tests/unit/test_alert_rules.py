"""docs/prometheus/alerts.yml: valid for `promtool check rules`, its unit tests pass (`promtool test rules`),
and every series it uses is one /metrics documents. promtool comes from Debian's `prometheus` package:
installed here when running as root in CI (.ci/run installs it too), else these tests skip saying so."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "docs" / "prometheus" / "alerts_test.yml"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is not None:
        return found
    if os.environ.get("CI") != "true" or os.geteuid() != 0:
        pytest.skip(
            "promtool not installed (Debian package prometheus; installed automatically only as root in CI)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"]
    done = subprocess.run(
        install, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(f"promtool could not be installed: apt-get exit {done.returncode}: {done.stderr[-300:]}")
    return found


def _run(*args: str) -> None:
    done = subprocess.run([_promtool(), *args], cwd=RULES.parent, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_check_rules() -> None:
    _run("check", "rules", RULES.name)


def test_promtool_rule_unit_tests() -> None:
    _run("test", "rules", RULE_TESTS.name)


def test_every_series_an_alert_uses_is_documented() -> None:
    used = set(re.findall(r"\bpropbot_[a-z_]+", RULES.read_text()))
    documented = set(re.findall(r"`(propbot_[a-z_]+)", (ROOT / "docs" / "api.md").read_text()))
    assert used, "no propbot series in the rules"
    assert used <= documented, sorted(used - documented)
