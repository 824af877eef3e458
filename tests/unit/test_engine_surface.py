from __future__ import annotations

import subprocess
import sys

import engine


def test_public_surface_is_declared_and_importable() -> None:
    assert sorted(engine.__all__) == sorted(set(engine.__all__))
    for name in engine.__all__:
        assert getattr(engine, name) is not None


def test_importing_the_engine_pulls_in_no_adapter_api_or_web_code() -> None:
    code = "import sys, engine; print(sorted(m for m in sys.modules if m.split('.')[0] in ('adapters', 'api', 'fastapi', 'httpx', 'sqlalchemy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
