"""The journal outbox's wire format and its consumer contract, without any broker (docs/scale-out.md).

One journal source (one hash chain, a gapless seq) is published row by row:
- subject `propbot.<source>.<stream>.<stream_id>` (the id escaped so it stays one subject token);
- `Nats-Msg-Id` = `<source>:<seq>`, so the broker drops a republished row inside its duplicate window;
- headers `Propbot-Source`, `Propbot-Seq`, `Propbot-Hash`, `Propbot-Prev-Hash`;
- payload: the row as JSON, every column exactly as the journal stores it (the payload column as its
  stored canonical text), so a consumer can recompute the row's hash with engine.journal.row_hash.

Delivery is at-least-once and in seq order per source: a row can arrive again (a relay restarted after
the broker's ack but before its cursor commit, later than the duplicate window), never out of order
or with a hole. SeqGate turns that into exactly-once, in-order for a consumer that persists its last
seq with its own effects.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.errors import EngineError
from engine.journal import RAW_COLUMNS, RawRow, row_hash

SUBJECT_ROOT = "propbot"
SOURCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Subject tokens must not hold '.', '*', '>' or whitespace; '%' is escaped too so the escaping is reversible
_UNSAFE = re.compile(r"[^A-Za-z0-9_:/=+@-]")
_INT_COLUMNS = frozenset({"seq", "version", "schema_version"})
_NULLABLE = frozenset({"from_state", "to_state", "engine_id"})  # engine_id: NULL on rows before 0004

HDR_SOURCE = "Propbot-Source"
HDR_SEQ = "Propbot-Seq"
HDR_HASH = "Propbot-Hash"
HDR_PREV = "Propbot-Prev-Hash"
HDR_MSG_ID = "Nats-Msg-Id"


class OutboxError(EngineError):
    reason = "outbox_error"


class OutboxGap(OutboxError):
    """A row arrived whose predecessor never did: the stream lost history (or was purged)."""

    reason = "outbox_gap"


class ChainBroken(OutboxError):
    """A row that does not chain onto the previous one (prev_hash or recomputed hash differ)."""

    reason = "outbox_chain_broken"


class SourceMismatch(OutboxError):
    """The stream's last row of a source is not this journal's row at that seq: another journal is (or
    was) relayed under the same source name, and the broker would drop this one's rows as duplicates."""

    reason = "outbox_source_mismatch"


def check_source(source: str) -> str:
    if not SOURCE.match(source):
        raise ValueError(f"source must be 1-64 of [A-Za-z0-9_-], was {source!r}")
    return source


def default_source(url: str) -> str:
    """A relay's source name when none is given: the PostgreSQL schema of the URL's search_path (one
    chain per schema).

    Raises:
        ValueError: the URL names no schema (SQLite, or PostgreSQL without search_path). Refused rather
            than guessed: two journals relayed under one name share `Nats-Msg-Id`s, and the broker
            silently drops the second one's rows as duplicates."""
    options = " ".join(parse_qs(urlsplit(url).query).get("options", []))
    for part in options.split():
        if part.startswith("-csearch_path="):
            schema = part.removeprefix("-csearch_path=").split(",")[0].strip()
            if schema:
                return schema[:64]
    raise ValueError(
        "this journal URL names no PostgreSQL schema (search_path), so the relay cannot derive a source "
        "name that differs between journals: give one (`--source`, or `source:` in the relay section)"
    )


def subject_token(value: str) -> str:
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), value) or "%"


def subject_for(source: str, stream: str, stream_id: str) -> str:
    return f"{SUBJECT_ROOT}.{source}.{subject_token(stream)}.{subject_token(stream_id)}"


def source_subjects(source: str) -> str:
    """The filter matching every row of one source."""
    return f"{SUBJECT_ROOT}.{source}.>"


def msg_id(source: str, seq: int) -> str:
    return f"{source}:{seq}"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes


def encode_row(source: str, row: RawRow) -> OutboxMessage:
    body = dict(zip(RAW_COLUMNS, row, strict=True))
    seq = int(row[0])
    headers = {
        HDR_MSG_ID: msg_id(source, seq),
        HDR_SOURCE: source,
        HDR_SEQ: str(seq),
        HDR_HASH: str(body["hash"]),
        HDR_PREV: str(body["prev_hash"]),
    }
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()
    return OutboxMessage(seq, subject_for(source, str(row[1]), str(row[2])), headers, data)


def decode_row(data: bytes) -> RawRow:
    """The row a message carries, its types checked (a consumer must not trust the broker's bytes).

    Raises:
        OutboxError: not a journal row."""
    try:
        body: Any = json.loads(data)
    except ValueError as exc:
        raise OutboxError(f"message is not JSON: {exc}") from None
    if not isinstance(body, dict) or set(body) != set(RAW_COLUMNS):
        raise OutboxError("message is not a journal row (wrong fields)")
    for name in RAW_COLUMNS:
        value = body[name]
        if name in _INT_COLUMNS:
            ok = type(value) is int
        else:
            ok = isinstance(value, str) or (name in _NULLABLE and value is None)
        if not ok:
            raise OutboxError(f"journal row field {name} has the wrong type")
    return tuple(body[name] for name in RAW_COLUMNS)


def recompute_hash(row: RawRow) -> str:
    (
        seq,
        stream,
        sid,
        version,
        trigger,
        frm,
        to,
        payload,
        actor,
        reason,
        schema,
        created,
        prev,
        _,
        engine_id,
    ) = row
    return row_hash(
        prev, seq, stream, sid, version, trigger, frm, to, payload, actor, reason, schema, created, engine_id
    )


def check_link(prev_hash: str, row: RawRow) -> None:
    """Raises ChainBroken unless `row` names `prev_hash` as its predecessor and hashes to its own hash."""
    if row[12] != prev_hash:
        raise ChainBroken(f"seq {row[0]}: prev_hash {row[12]} is not the previous row's hash {prev_hash}")
    if recompute_hash(row) != row[13]:
        raise ChainBroken(f"seq {row[0]}: stored hash {row[13]} is not the hash of the row")


class SeqGate:
    """Dedup by (source, seq) and refuse holes: `admit` says whether a row is new (the next seq) or a
    duplicate (at or below the last admitted seq), and raises OutboxGap when seqs were skipped.

    Start it from what the consumer persisted (`last` per source) and persist the new last seq in the
    same transaction as the row's effects: then a crash between effect and ack only causes a duplicate,
    which this gate drops."""

    def __init__(self, last: dict[str, int] | None = None) -> None:
        self.last: dict[str, int] = dict(last or {})

    def admit(self, source: str, seq: int) -> bool:
        last = self.last.get(source, 0)
        if seq <= last:
            return False
        if seq != last + 1:
            raise OutboxGap(
                f"source {source}: seq {seq} arrived after {last}; seqs {last + 1}..{seq - 1} are missing"
            )
        self.last[source] = seq
        return True


def relay_metrics(st: dict[str, Any]) -> str:
    """Prometheus lines of a relay's status (the relay's own /metrics, and the API's when it runs there)."""
    label = f'{{source="{st["source"]}"}}'
    return "\n".join(
        [
            "# HELP propbot_relay_cursor Last journal seq JetStream acknowledged.",
            "# TYPE propbot_relay_cursor gauge",
            f"propbot_relay_cursor{label} {st['cursor']}",
            "# TYPE propbot_relay_journal_last_seq gauge",
            f"propbot_relay_journal_last_seq{label} {st['journal_last_seq']}",
            "# HELP propbot_relay_lag_rows Journal rows not yet acknowledged by JetStream.",
            "# TYPE propbot_relay_lag_rows gauge",
            f"propbot_relay_lag_rows{label} {st['lag_rows']}",
            "# HELP propbot_relay_lag_seconds Age of the oldest journal row not yet acknowledged.",
            "# TYPE propbot_relay_lag_seconds gauge",
            f"propbot_relay_lag_seconds{label} {st['lag_seconds']}",
            "# TYPE propbot_relay_published_total counter",
            f"propbot_relay_published_total{label} {st['published_total']}",
            "# TYPE propbot_relay_connected gauge",
            f"propbot_relay_connected{label} {int(st['connected'])}",
            "# HELP propbot_relay_up 1 unless the relay is in ERROR (a stuck relay is WARN: still up).",
            "# TYPE propbot_relay_up gauge",
            f"propbot_relay_up{label} {int(st['status'] != 'ERROR')}",
            "# HELP propbot_relay_active 1 while this relay holds its source's lock and publishes, 0 as a standby.",
            "# TYPE propbot_relay_active gauge",
            f"propbot_relay_active{label} {int(st.get('role') == 'ACTIVE')}",
            "",
        ]
    )


def mirror_metrics(st: dict[str, Any]) -> str:
    """Prometheus lines of a mirror's status (`propbot mirror --status-port`)."""
    label = f'{{source="{st["source"]}"}}'
    pending = st["pending"] if st["pending"] is not None else "NaN"
    return "\n".join(
        [
            "# HELP propbot_mirror_head_seq Last seq in the mirror's database.",
            "# TYPE propbot_mirror_head_seq gauge",
            f"propbot_mirror_head_seq{label} {st['head_seq']}",
            "# TYPE propbot_mirror_rows_written_total counter",
            f"propbot_mirror_rows_written_total{label} {st['rows_written']}",
            "# HELP propbot_mirror_pending Messages the broker still holds for the mirror (last seen).",
            "# TYPE propbot_mirror_pending gauge",
            f"propbot_mirror_pending{label} {pending}",
            "# TYPE propbot_mirror_connected gauge",
            f"propbot_mirror_connected{label} {int(st['connected'])}",
            "# TYPE propbot_mirror_up gauge",
            f"propbot_mirror_up{label} {int(st['status'] == 'OK')}",
            "",
        ]
    )
