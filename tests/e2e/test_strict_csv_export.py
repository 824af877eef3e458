"""The CSV export cannot smuggle a spreadsheet formula (OWASP CSV injection): such cells get a leading '."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest

from api.export import csv_cell


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("operator", "operator"),
        ("", ""),
        (7, 7),
    ],
)
def test_csv_cell_neutralises_formulas(value: object, cell: object) -> None:
    assert csv_cell(value) == cell


def test_a_formula_in_a_hold_reason_is_quoted_in_the_csv_export(
    admin: httpx.Client, auditor: httpx.Client
) -> None:
    formula = '=HYPERLINK("http://x")'
    assert admin.post("/api/session/hold", json={"reason": formula}).status_code == 200
    try:
        exported = auditor.get("/api/journal/export", params={"format": "csv"})
        assert exported.status_code == 200
        table = list(csv.reader(io.StringIO(exported.text)))
        cells = [cell for row in table[1:] for cell in row]
        assert "'" + formula in cells
        assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
        # the JSON lines export keeps the exact text
        jsonl = auditor.get("/api/journal/export", params={"format": "jsonl"}).text
        assert formula in [json.loads(line)["reason"] for line in jsonl.splitlines()]
    finally:
        admin.post("/api/session/resume")
