"""Code cites only files that exist: a `.md` named in a comment or docstring is a file of this
repository, or one of Binance's official doc files listed in docs/architecture.md section 14."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITED = re.compile(r"(?<![\w/.-])([A-Za-z0-9_][A-Za-z0-9_/-]*\.md)\b")
SECTION = re.compile(r"^## 14\. References to Binance's documentation\n(.*?)(?=^## |\Z)", re.S | re.M)


def binance_doc_names() -> set[str]:
    section = SECTION.search((ROOT / "docs" / "architecture.md").read_text())
    assert section is not None, "docs/architecture.md lost its section 14"
    return set(re.findall(r"`([\w/.-]+\.md)`", section[1]))


def test_every_cited_markdown_file_exists() -> None:
    binance = binance_doc_names()
    assert "rest-api.md" in binance
    ours = {p.relative_to(ROOT).as_posix() for p in ROOT.glob("**/*.md") if ".venv" not in p.parts}
    names = {Path(p).name for p in ours}
    missing = []
    for folder in ("engine", "api", "adapters", "tests", "benchmarks", "migrations"):
        for path in (ROOT / folder).rglob("*.py"):
            for cited in CITED.findall(path.read_text()):
                if cited not in binance and cited not in ours and cited not in names:
                    missing.append(f"{path.relative_to(ROOT)}: {cited}")
    assert missing == []
