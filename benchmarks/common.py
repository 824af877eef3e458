"""Helpers shared by the benchmark scripts: a printed table, a JSON result file, RSS, a fresh journal."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
PG_URL = os.environ.get("PROPBOT_BENCH_PG_URL") or os.environ.get("PROPBOT_TEST_PG_URL", "")


def table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n== {title}")
    if not rows:
        return
    cols = list(rows[0])
    widths = [max(len(str(c)), *(len(_fmt(r.get(c))) for r in rows)) for c in cols]
    print("  ".join(str(c).ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(cols, widths, strict=True)))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    print(f"\nwrote {path.relative_to(ROOT)}")
    return path


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def temp_sqlite_url(name: str) -> tuple[str, Path]:
    folder = Path(tempfile.mkdtemp(prefix="propbot-bench-"))
    return f"sqlite:///{folder / name}", folder / name


def fresh_pg_schema(tag: str) -> str | None:
    """A new empty schema on the PostgreSQL server, or None when no server URL is configured."""
    if not PG_URL:
        return None
    import uuid

    from sqlalchemy import create_engine, text

    schema = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
    eng = create_engine(PG_URL)
    with eng.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    eng.dispose()
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def drop_pg_schema(url: str) -> None:
    from sqlalchemy import create_engine, text

    schema = url.rsplit("%3D", 1)[1]
    eng = create_engine(PG_URL)
    with eng.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    eng.dispose()
