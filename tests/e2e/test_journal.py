"""Journal query filters, pagination by after_seq, verify and export, through the real HTTP server."""

from __future__ import annotations

import csv
import io
import itertools
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from engine.journal import STREAMS
from tests.e2e.server import journal_rows


@pytest.fixture(scope="module", autouse=True)
def some_orders(trader: httpx.Client) -> None:
    for i in range(3):
        r = trader.post(
            "/api/live/order",
            json={
                "symbol": "BTCUSDT",
                "side": "SELL",
                "type": "MARKET",
                "quantity": "0.001",
                "newClientOrderId": f"pb-e2e-j-{i}",
            },
        )
        assert r.status_code == 200, r.text


def test_filters_select_matching_rows_only(auditor: httpx.Client) -> None:
    rows = journal_rows(auditor, stream="order", stream_id="pb-e2e-j-1")
    assert {r["stream_id"] for r in rows} == {"pb-e2e-j-1"}
    assert [r["trigger"] for r in rows] == ["create", "preflight", "send", "fill"]
    creates = journal_rows(auditor, stream="order", trigger="create", actor="trader")
    assert {"pb-e2e-j-0", "pb-e2e-j-1", "pb-e2e-j-2"} <= {r["stream_id"] for r in creates}
    assert all(r["actor"] == "trader" and r["trigger"] == "create" for r in creates)


@pytest.mark.parametrize("path", ["/api/journal", "/api/journal/export"])
def test_every_stream_of_the_journal_is_a_filter(auditor: httpx.Client, path: str) -> None:
    """The late trades' `trade` stream (engine.late_trades) included: a filter, not a 422."""
    for stream in STREAMS:
        r = auditor.get(path, params={"stream": stream})
        assert r.status_code == 200, (stream, r.text)
    assert all(row["stream"] == "trade" for row in journal_rows(auditor, stream="trade"))


def test_time_range_filters(auditor: httpx.Client) -> None:
    everything = journal_rows(auditor)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert journal_rows(auditor, since=future) == []
    assert len(journal_rows(auditor, until=future)) == len(everything)
    first = everything[0]["created_at"]
    assert journal_rows(auditor, until=first) == []  # until is exclusive
    assert len(journal_rows(auditor, since=first.replace("Z", "+00:00"))) == len(everything)


@pytest.mark.parametrize("path", ["/api/journal", "/api/journal/export"])
@pytest.mark.parametrize(
    "params",
    [
        {"since": "0001-01-01T00:00:00+14:00"},  # valid in its offset, before year 1 in UTC
        {"until": "9999-12-31T23:59:59-14:00"},  # after year 9999 in UTC
        {"since": "x"},
        {"until": "2026-01-01T00:00:00"},  # no timezone
    ],
)
def test_instants_outside_the_calendar_in_utc_are_422(
    auditor: httpx.Client, path: str, params: dict[str, str]
) -> None:
    r = auditor.get(path, params=params)
    assert (r.status_code, r.json()["reason"]) == (422, "invalid_query"), r.text
    assert r.json()["detail"][0]["field"] in params


def test_instants_at_the_calendar_limits_in_utc_filter(auditor: httpx.Client) -> None:
    everything = journal_rows(auditor)
    assert len(journal_rows(auditor, since="0001-01-01T00:00:00Z")) == len(everything)
    assert len(journal_rows(auditor, since="0999-06-01T00:00:00+00:00")) == len(everything)
    assert journal_rows(auditor, until="0999-06-01T00:00:00Z") == []
    assert journal_rows(auditor, since="9999-12-31T23:59:59+14:00") == []


def test_pagination_walks_every_row_once(auditor: httpx.Client) -> None:
    whole = auditor.get("/api/journal", params={"limit": 1000}).json()["items"]
    seen, after = [], 0
    while True:
        page = auditor.get("/api/journal", params={"after_seq": after, "limit": 4}).json()
        assert len(page["items"]) <= 4
        seen.extend(page["items"])
        after = page["next_after_seq"]
        if not page["has_more"]:
            break
    assert [r["seq"] for r in seen] == [r["seq"] for r in whole]
    assert [r["seq"] for r in whole] == list(range(1, len(whole) + 1))


def test_rows_carry_the_hash_chain(auditor: httpx.Client) -> None:
    rows = auditor.get("/api/journal", params={"limit": 5}).json()["items"]
    assert rows[0]["prev_hash"] == "0" * 64
    for prev, row in itertools.pairwise(rows):
        assert row["prev_hash"] == prev["hash"]


def test_verify_and_exports_agree(auditor: httpx.Client) -> None:
    verify = auditor.get("/api/journal/verify").json()
    jsonl = auditor.get("/api/journal/export", params={"format": "jsonl"})
    assert jsonl.status_code == 200
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert len(lines) >= verify["rows"]  # the audit rows of these calls may land in between
    assert lines[verify["rows"] - 1]["hash"] == verify["last_hash"]
    exported = auditor.get("/api/journal/export", params={"format": "csv"})
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert [int(r["seq"]) for r in table[: verify["rows"]]] == list(range(1, verify["rows"] + 1))
    assert json.loads(table[0]["payload"]) == lines[0]["payload"]


def test_export_takes_filters(auditor: httpx.Client) -> None:
    r = auditor.get("/api/journal/export", params={"format": "jsonl", "stream": "session"})
    assert {json.loads(line)["stream"] for line in r.text.splitlines()} == {"session"}
    assert auditor.get("/api/journal/export", params={"format": "xml"}).status_code == 422
