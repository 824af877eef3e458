"""`.env.example` lists exactly the variables the settings read (api/settings.py, api/dotenv.py), is a
valid .env itself, and holds no value that looks like a secret."""

from __future__ import annotations

import re
from pathlib import Path

from api.dotenv import parse_env_text
from api.settings import PROFILES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / ".env.example"
# A variable line, in use or commented out: `KEY=...` or `# KEY=...` (prose comments never start so)
VARIABLE = re.compile(r"^(?:#\s)?([A-Z][A-Z0-9_]*)=", re.M)
OURS = re.compile(r"^(?:PROPBOT_[A-Z_]+|BINANCE_API_[A-Z_]+|SAFE_MODE|EXCHANGE_PROFILE)$")


def read_by_settings() -> set[str]:
    """Every variable name the settings modules spell out; BINANCE_API_*_{suffix} for each keyed profile."""
    names: set[str] = set()
    for module in ("settings.py", "dotenv.py"):
        source = (ROOT / "api" / module).read_text()
        names |= {n for n in re.findall(r'"([A-Z][A-Z0-9_]+)"', source) if OURS.match(n)}
        for stem in re.findall(r'f"(BINANCE_API_[A-Z_]+_)\{suffix\}"', source):
            names |= {stem + p.upper() for p in PROFILES if p != "paper"}
    return names


def test_env_example_lists_exactly_what_the_settings_read() -> None:
    listed = VARIABLE.findall(EXAMPLE.read_text())
    assert len(listed) == len(set(listed)), "a variable is listed twice"
    assert set(listed) == read_by_settings()


def test_env_example_is_a_valid_env_file_without_secrets() -> None:
    values = parse_env_text(EXAMPLE.read_text(), str(EXAMPLE))
    assert values == {"EXCHANGE_PROFILE": "paper", "SAFE_MODE": "true"}  # the rest is commented out
    for line in EXAMPLE.read_text().splitlines():
        match = re.match(r"^#\s([A-Z_]+)=(.*)$", line)
        if match and ("SECRET" in match[1] or match[1].startswith("BINANCE_API_KEY")):
            assert match[2].startswith("your-"), line  # placeholders only
