"""Journal rows, their hash chain, and the Journal port.

A row's hash is SHA-256 over the previous row's hash and the row's canonical encoding: its fields in a
fixed order joined by U+001F. Identifiers are validated to a charset without control characters, the
payload is stored as canonical JSON (sorted keys, ASCII-escaped) and the free-text reason is JSON-encoded,
so no field can contain the separator and the encoding is unambiguous. Verify recomputes it from the
stored text alone (no re-serialisation), which keeps replay of a million rows fast.

`engine_id` names the process that wrote the row (docs/adr/0007-one-chain-per-account.md). It is part of
the hash when present, as a 14th field after created_at; rows written before the column existed (NULL or
empty) hash exactly as they always did, so old journals still verify.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

SCHEMA_VERSION = 1
GENESIS_HASH = "0" * 64
STREAMS = ("session", "order", "trade", "audit", "approval")
# Which process wrote a row: host, pid and a start nonce, or a configured id (api.settings checks it)
ENGINE_ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,64}$"

# allow_nan=False: NaN and Infinity are not JSON; a payload holding one is refused before it is journaled
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


def _c_encoder() -> Any:
    """The C encoder behind _dumps, built once: JSONEncoder.encode builds a new one per call, which costs
    more than encoding the small payload of most rows (every decided transition encodes one). The same
    arguments as _dumps (its `iterencode`): sorted keys, compact separators, ASCII, allow_nan off (the C
    encoder refuses NaN/Infinity itself); no circular
    check (payloads are trees the engine built; a cycle is a bug and still fails, by recursion)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return None

    def unserialisable(o: object) -> None:
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    return make(
        None, unserialisable, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, False
    )


_encode = _c_encoder()


def canonical_json(payload: dict[str, Any]) -> str:
    """Raises ValueError for NaN/Infinity anywhere in the payload (json's "Out of range float values")."""
    if _encode is None:
        return _dumps(payload)
    return "".join(_encode(payload, 0))


def format_ts(ts: datetime) -> str:
    """Fixed-width UTC text: sorts and compares as time on every backend, and hashes the same."""
    # isoformat, not strftime: %Y does not zero-pad years before 1000, which would break the fixed width
    return ts.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def row_hash(
    prev_hash: str,
    seq: int,
    stream: str,
    stream_id: str,
    version: int,
    trigger: str,
    from_state: str | None,
    to_state: str | None,
    payload_json: str,
    actor: str,
    reason: str,
    schema_version: int,
    created_at: str,
    engine_id: str | None = None,
) -> str:
    material = "\x1f".join(
        (
            prev_hash,
            str(seq),
            stream,
            stream_id,
            str(version),
            trigger,
            from_state or "",
            to_state or "",
            payload_json,
            actor,
            _dumps(reason) if reason else '""',
            str(schema_version),
            created_at,
        )
    )
    if engine_id:  # validated to ENGINE_ID_PATTERN: it cannot contain the separator
        material = f"{material}\x1f{engine_id}"
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A decided transition, not yet stored. `version` is the stream's next version (optimistic lock).

    The payload is encoded when the entry is decided, on the caller's thread: the journal's single
    writer thread is the group-commit bottleneck, so it only hashes and inserts.

    Raises:
        ValueError: the payload holds NaN or Infinity (not JSON: it would not replay the same)."""

    stream: str
    stream_id: str
    version: int
    trigger: str
    from_state: str | None
    to_state: str | None
    payload: dict[str, Any]
    actor: str
    reason: str = ""
    payload_json: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.payload_json:
            object.__setattr__(self, "payload_json", canonical_json(self.payload))


@dataclass(frozen=True, slots=True)
class Record:
    """A stored journal row."""

    seq: int
    stream: str
    stream_id: str
    version: int
    trigger: str
    from_state: str | None
    to_state: str | None
    payload_json: str
    actor: str
    reason: str
    schema_version: int
    created_at: str
    prev_hash: str
    hash: str
    engine_id: str | None = None  # None on rows written before migration 0004
    # The payload this process encoded into payload_json when it wrote the row (None when read back):
    # the writer's observers read every durable row, and decoding the text again cost them more than
    # their own work. Read-only, like the rest of the record.
    decoded: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def payload(self) -> dict[str, Any]:
        if self.decoded is not None:
            return self.decoded
        loaded: dict[str, Any] = json.loads(self.payload_json)
        return loaded

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "stream": self.stream,
            "stream_id": self.stream_id,
            "version": self.version,
            "trigger": self.trigger,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "payload": self.payload,
            "actor": self.actor,
            "reason": self.reason,
            "schema_version": self.schema_version,
            "created_at": self.created_at,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "engine_id": self.engine_id,
        }


# Column order of raw rows as Journal.scan yields them (tuples, for replay speed)
RAW_COLUMNS = (
    "seq",
    "stream",
    "stream_id",
    "version",
    "trigger",
    "from_state",
    "to_state",
    "payload",
    "actor",
    "reason",
    "schema_version",
    "created_at",
    "prev_hash",
    "hash",
    "engine_id",
)
RawRow = tuple[int, str, str, int, str, str | None, str | None, str, str, str, int, str, str, str, str | None]


@dataclass(frozen=True, slots=True)
class JournalQuery:
    after_seq: int = 0
    limit: int = 100
    stream: str | None = None
    stream_id: str | None = None
    trigger: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class Journal(Protocol):
    """Append-only store of transitions. Implementations: engine.persistence.SqlJournal."""

    def append(self, entries: Sequence[NewEntry]) -> list[Record]:
        """Store entries atomically, chained after the current last row.

        Raises:
            VersionConflict: a stream already has one of these versions; nothing was written.
        """
        ...

    def append_groups(self, groups: Sequence[Sequence[NewEntry]]) -> list[list[Record] | Exception]:
        """Group commit: each group is all-or-nothing on its own, all groups share one commit."""
        ...

    def settle(self) -> None:
        """Return once no write transaction that began before this call can still commit, so that rows
        read afterwards show whether an append whose outcome is unknown (its answer to COMMIT lost)
        landed or not (engine.writer).

        Raises:
            JournalUnavailable: the database cannot be reached, or a transaction still holds the chain.
        """
        ...

    def query(self, q: JournalQuery) -> list[Record]: ...

    def stream(self, stream: str, stream_id: str) -> list[Record]: ...

    def stream_version(self, stream: str, stream_id: str) -> int:
        """The stream's highest version, 0 when it has no row (versions are 1, 2, ... without gaps)."""
        ...

    def scan(self, batch_size: int = 10_000, after_seq: int = 0) -> Iterator[RawRow]:
        """Every row after `after_seq` in seq order, as raw tuples in RAW_COLUMNS order."""
        ...

    def last_seq(self) -> int: ...

    def hash_at(self, seq: int) -> str | None:
        """The stored hash of row `seq`, None when there is no such row (checkpoint comparison)."""
        ...

    def close(self) -> None: ...
