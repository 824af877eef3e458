"""A real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright's Python API.

Never `playwright install` (it downloads a browser build; these machines have no internet): the set-up
installs Debian's package when it is missing and we are root, else every test here skips saying why."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def _install_chromium() -> str | None:
    """None when /usr/bin/chromium is there (installed now if need be), else why it cannot be."""
    if CHROMIUM.exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get)"
    # pytest-xdist workers may all get here at once: one installs, the others wait for it
    with open(Path(tempfile.gettempdir()) / "propbot-chromium-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return None if CHROMIUM.exists() else _apt_install()


def _apt_install() -> str | None:
    def apt(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        return subprocess.run(
            ["apt-get", *args], env=env, capture_output=True, text=True, timeout=900, check=False
        )

    done = apt("install", "-y", "-q", "chromium")
    if done.returncode != 0:  # a fresh machine's package lists may be missing or stale
        apt("update", "-q")
        done = apt("install", "-y", "-q", "chromium")
    if done.returncode == 0 and CHROMIUM.exists():
        return None
    return f"apt-get install chromium failed: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module scope, not session: while Playwright's sync API is open its event loop counts as running in
    this thread, and pytest-asyncio's tests elsewhere could not start theirs."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (it is in the dev extras: make install)")
    why = _install_chromium()
    if why is not None:
        pytest.skip(why)
    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """PROPBOT_SCREENSHOT_DIR if set (CI keeps it), else the test's own temporary directory."""
    chosen = os.environ.get("PROPBOT_SCREENSHOT_DIR")
    path = Path(chosen) if chosen else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path
