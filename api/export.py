"""Journal export as byte chunks (JSON lines or CSV), page by page in seq order; shared by API and CLI."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import replace

from engine.journal import RAW_COLUMNS, Journal, JournalQuery, Record

PAGE = 1000
# OWASP CSV injection: a spreadsheet runs a cell starting with one of these as a formula
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A text cell a spreadsheet would read as a formula gets a leading single quote; others pass."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def pages(journal: Journal, q: JournalQuery) -> Iterator[list[Record]]:
    """Every row matching `q` after q.after_seq (q.limit is ignored), PAGE rows at a time."""
    cursor = q.after_seq
    while True:
        rows = journal.query(replace(q, after_seq=cursor, limit=PAGE))
        if not rows:
            return
        yield rows
        cursor = rows[-1].seq
        if len(rows) < PAGE:
            return


def export_jsonl(journal: Journal, q: JournalQuery) -> Iterator[bytes]:
    for rows in pages(journal, q):
        yield "".join(json.dumps(r.as_dict(), separators=(",", ":")) + "\n" for r in rows).encode()


def export_csv(journal: Journal, q: JournalQuery) -> Iterator[bytes]:
    """RAW_COLUMNS as the header; the payload column holds the row's canonical JSON text.

    Text cells that start with = + - @ tab or CR are prefixed with ' (see csv_cell), so such a cell
    differs from the journal by that quote; the JSON lines export is the exact one.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(RAW_COLUMNS)
    for rows in pages(journal, q):
        for r in rows:
            cells = [r.seq, r.stream, r.stream_id, r.version, r.trigger, r.from_state or "", r.to_state or "",
                     r.payload_json, r.actor, r.reason, r.schema_version, r.created_at, r.prev_hash, r.hash,
                     r.engine_id or ""]  # fmt: skip
            writer.writerow([csv_cell(c) for c in cells])
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode()
