"""Which PostgreSQL schema a journal URL selects, and the URL of an account's schema (plain text work:
route modules import api.settings, and they may not import SQLAlchemy)."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

_SEARCH_PATH = "-csearch_path="


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def search_path_of(url: str) -> str | None:
    """The first schema of `options=-csearch_path=<schema>` in a PostgreSQL URL, else None."""
    for options in parse_qs(urlsplit(url).query).get("options", []):
        for part in options.split():
            if part.startswith(_SEARCH_PATH):
                return part.removeprefix(_SEARCH_PATH).split(",")[0].strip('"') or None
    return None


def with_search_path(url: str, schema: str) -> str:
    """`url` whose sessions use `schema`, as tests/conftest.py's journal_url fixture builds it.

    Raises:
        ValueError: the URL already passes libpq options (merging them would be a guess).
    """
    if "options" in parse_qs(urlsplit(url).query):
        raise ValueError("the journal URL already has options=; give the account or the options, not both")
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(_SEARCH_PATH + schema, safe='-')}"
