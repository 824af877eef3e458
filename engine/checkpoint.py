"""Signed checkpoints of the journal head, kept outside the journal database.

The hash chain proves the rows agree with each other, not that none are missing or that nobody rewrote
them all: a truncated tail (`DELETE ... WHERE seq > N`, a backup copied without its -wal file) or a
consistent rewrite from any row verifies on its own. So the engine signs its head (seq, hash, time) with
its own Ed25519 key and appends it to a log of its own — a JSON-lines file, one signed line per
checkpoint, each line also naming the SHA-256 of the line before it, fsync'd. At start and in
`propbot journal verify` the journal must reach the newest checkpoint with the same hash there.

Line: {"body": {"v": 1, "kind": "head"|"accepted_loss", "seq", "hash", "at", "prev",
                 ["old_seq", "old_hash", "reason"]}, "sig": base64url(Ed25519(canonical body))}

`accepted_loss` lines (`propbot journal accept-loss`) are an operator's signed statement that the journal
as it is now (seq, hash) replaces the checkpoints before it; they are signed with the same engine key.

Files: the private key (PEM, 0600) and its public key (base64 raw, alongside) in the data dir by default;
the log anywhere (keep a copy on other storage: whoever can delete both the journal tail and the log's
tail, with the key, defeats this — see docs/SECURITY.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.errors import JournalCorrupt
from engine.journal import GENESIS_HASH, format_ts

log = logging.getLogger(__name__)

KEY_FILE = "checkpoint_key.pem"
PUBLIC_KEY_FILE = "checkpoint_key.pub"
LOG_FILE = "checkpoints.jsonl"
_NO_LINE = "0" * 64
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


class CheckpointCorrupt(JournalCorrupt):
    """A line of the checkpoint log is unreadable, unsigned, signed by another key or out of order.

    A JournalCorrupt (seq 0: no row can be trusted against this log) so start-up refuses and the API
    answers 503 journal_corrupt; `line` is the 1-based line number."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(0, f"checkpoint log {path} line {line}: {problem}")
        self.line = line


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: str
    at: str
    kind: str = "head"  # "head" | "accepted_loss"
    line: int = 0
    old_seq: int | None = None
    old_hash: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Problem:
    """What compare found: the first missing or differing seq, and the sentence for JournalCorrupt."""

    seq: int
    problem: str
    kind: str  # "truncated" | "rewritten"


class Head(Protocol):
    """A ReplayResult, or anything else that knows the journal's last seq and hash."""

    @property
    def last_seq(self) -> int: ...

    @property
    def last_hash(self) -> str: ...


# -- keys -----------------------------------------------------------------------------------------


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(
        key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()


def load_or_create_key(folder: Path) -> Ed25519PrivateKey:
    """The engine's checkpoint key: <folder>/checkpoint_key.pem, created (0600) on first use, with its
    public key written alongside (checkpoint_key.pub, base64)."""
    path = folder / KEY_FILE
    if path.exists():
        return load_private_key(path)
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    (folder / PUBLIC_KEY_FILE).write_text(public_key_text(key.public_key()) + "\n")
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Raises ValueError when the file is not an unencrypted Ed25519 PEM key."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """checkpoint_key.pub (base64 of the raw 32 bytes). Raises ValueError when it is not one."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(path.read_text().strip(), validate=True))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not a base64 Ed25519 public key") from exc


# -- the log --------------------------------------------------------------------------------------


class CheckpointLog:
    """Append-only, signed, line-chained checkpoints. Give the private key to write (the engine,
    accept-loss), the public key to read and compare only (verify)."""

    def __init__(
        self,
        path: Path,
        private_key: Ed25519PrivateKey | None = None,
        public_key: Ed25519PublicKey | None = None,
    ) -> None:
        if private_key is None and public_key is None:
            raise ValueError("a checkpoint log needs the private key (to write) or the public key (to read)")
        self.path = Path(path)
        self._private = private_key
        self._public = public_key or (private_key.public_key() if private_key else None)
        self._lock = threading.Lock()
        self._prev_line: str | None = None  # SHA-256 of the last line, once known
        self._known_size = -1  # the file size after our last append: another writer changes it

    # -- writing ----------------------------------------------------------------------------------

    def _size_on_disk(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return -1

    def append(
        self,
        seq: int,
        hash: str,
        at: datetime | str | None = None,
        *,
        kind: str = "head",
        old_seq: int | None = None,
        old_hash: str | None = None,
        reason: str = "",
    ) -> Checkpoint:
        """Sign and append one checkpoint, durably (write + fsync) before returning. Thread-safe.

        Raises:
            OSError: the file cannot be written.
            CheckpointCorrupt: the existing log does not verify (nothing is appended to it).
        """
        if self._private is None:
            raise ValueError("this checkpoint log was opened with the public key only")
        stamp = at if isinstance(at, str) else format_ts(at or datetime.now(UTC))
        with self._lock:
            if self._prev_line is not None and self._size_on_disk() != self._known_size:
                self._prev_line = None  # another writer (e.g. `propbot journal accept-loss`) appended since
            if self._prev_line is None:
                self._drop_torn_tail()
                lines = self._verified_lines()
                self._prev_line = lines[-1][1] if lines else _NO_LINE
            body: dict[str, Any] = {"v": 1, "kind": kind, "seq": int(seq), "hash": hash, "at": stamp,
                                    "prev": self._prev_line}  # fmt: skip
            if kind == "accepted_loss":
                body.update(old_seq=old_seq, old_hash=old_hash, reason=reason)
            encoded = _dumps(body)
            line = _dumps({"body": body, "sig": _b64e(self._private.sign(encoded.encode()))})
            created = not self.path.exists()
            if created:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
                self._known_size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if created:  # the new directory entry must survive a crash too
                dfd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            self._prev_line = hashlib.sha256(line.encode()).hexdigest()
        return Checkpoint(int(seq), hash, stamp, kind, 0, old_seq, old_hash, reason)

    def _drop_torn_tail(self) -> None:
        """A crash mid-append can leave a last line without its newline: it was never complete, so it
        was never a checkpoint; cut it before appending (reading ignores it too)."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            os.truncate(self.path, data.rfind(b"\n") + 1)

    # -- reading ----------------------------------------------------------------------------------

    def _verified_lines(self, *, every_signature: bool = False) -> list[tuple[Checkpoint, str]]:
        """(checkpoint, SHA-256 of its line) for every complete line, all of them authenticated.

        Each line's signed body names the SHA-256 of the line before, so the newest line's signature
        vouches for every line before it: the fast path checks that chain, the newest line's signature
        and every accepted_loss line's (an Ed25519 verify costs ~100-200 µs; a log of a busy month has
        millions of lines). When anything does not fit, every line's signature is checked in order, so
        the error names the first bad line either way."""
        if not self.path.exists():
            return []
        complete = self.path.read_bytes().split(b"\n")[:-1]  # after the last newline: "" or a torn append
        if not every_signature:
            try:
                return self._chained(complete, signed=lambda number, cp: number == len(complete)
                                     or cp.kind == "accepted_loss")  # fmt: skip
            except CheckpointCorrupt:
                pass
        return self._chained(complete, signed=lambda number, cp: True)

    def _chained(
        self, complete: list[bytes], signed: Callable[[int, Checkpoint], bool]
    ) -> list[tuple[Checkpoint, str]]:
        out: list[tuple[Checkpoint, str]] = []
        prev = _NO_LINE
        for number, raw in enumerate(complete, start=1):
            out.append((self._parse(number, raw, prev, signed), hashlib.sha256(raw).hexdigest()))
            prev = out[-1][1]
        return out

    def _parse(
        self, number: int, raw: bytes, prev: str, signed: Callable[[int, Checkpoint], bool]
    ) -> Checkpoint:
        def bad(problem: str) -> CheckpointCorrupt:
            return CheckpointCorrupt(self.path, number, problem)

        try:
            obj = json.loads(raw)
            body, sig = obj["body"], _b64d(obj["sig"])
            encoded = _dumps(body).encode()
            cp = Checkpoint(
                int(body["seq"]), str(body["hash"]), str(body["at"]), str(body["kind"]), number,
                body.get("old_seq"), body.get("old_hash"), str(body.get("reason", "")),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise bad(f"not a checkpoint line ({type(exc).__name__}: {exc})"[:200]) from None
        if signed(number, cp):
            try:
                assert self._public is not None
                self._public.verify(sig, encoded)
            except InvalidSignature:
                raise bad("signature does not verify with the engine's checkpoint key") from None
        if body.get("prev") != prev:
            raise bad("does not follow the line before it (a line was removed, changed or reordered)")
        if cp.kind not in ("head", "accepted_loss"):
            raise bad(f"unknown kind {cp.kind!r}")
        return cp

    def checkpoints(self, *, every_signature: bool = False) -> list[Checkpoint]:
        """Every checkpoint, oldest first, every line authenticated and in order (see _verified_lines;
        every_signature=True checks each line's own signature even when all fits).

        Raises:
            CheckpointCorrupt: naming the first bad line.
        """
        with self._lock:
            lines = self._verified_lines(every_signature=every_signature)
        return [cp for cp, _ in lines]

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint (verifying every line), None when the log is empty or absent.

        Raises:
            CheckpointCorrupt: naming the first bad line.
        """
        cps = self.checkpoints()
        return cps[-1] if cps else None

    # -- comparing --------------------------------------------------------------------------------

    def compare(
        self, head: Head | tuple[int, str], journal_lookup: Callable[[int], str | None]
    ) -> Problem | None:
        """Does the journal (its head, and its hash at any seq by `journal_lookup`) reach the checkpoints?

        Only checkpoints from the newest accepted_loss on count. Returns None when the hash at the
        newest checkpoint the journal reaches is the checkpoint's (the chain, verified by replay, then
        vouches for every row before it) and the journal is not shorter than the newest checkpoint;
        else the earliest checkpoint the journal contradicts (rewritten), or the rows missing at the
        tail (truncated).

        Raises:
            CheckpointCorrupt: the log itself does not verify.
        """
        seq, digest = head if isinstance(head, tuple) else (head.last_seq, head.last_hash)
        cps = self.checkpoints()
        base = max((i for i, cp in enumerate(cps) if cp.kind == "accepted_loss"), default=0)
        active = cps[base:]
        if not active:
            return None

        def journal_hash(at_seq: int) -> str | None:
            if at_seq == seq:
                return digest
            if at_seq == 0:
                return GENESIS_HASH
            return journal_lookup(at_seq) if at_seq < seq else None

        reached = [cp for cp in active if cp.seq <= seq]
        if reached and journal_hash(reached[-1].seq) != reached[-1].hash:
            last_good = 0
            for cp in reached:  # every checkpoint against the journal: the earliest contradiction
                if journal_hash(cp.seq) != cp.hash:
                    return Problem(
                        cp.seq,
                        f"hash at seq {cp.seq} differs from the checkpoint of {cp.at} (log line {cp.line}): "
                        f"the chain was rewritten after seq {last_good}",
                        "rewritten",
                    )
                last_good = cp.seq
        newest = active[-1]
        if newest.seq > seq:
            return Problem(
                seq + 1,
                f"journal ends at seq {seq}, checkpoint at seq {newest.seq}: rows {seq + 1}..{newest.seq} "
                f"missing (checkpoint of {newest.at}, log line {newest.line})",
                "truncated",
            )
        return None

    def check(self, head: Head | tuple[int, str], journal_lookup: Callable[[int], str | None]) -> None:
        """compare, raising.

        Raises:
            JournalCorrupt: at the first missing or differing seq (CheckpointCorrupt for a bad log).
        """
        problem = self.compare(head, journal_lookup)
        if problem is not None:
            raise JournalCorrupt(problem.seq, problem.problem)


def engine_log(data_dir: Path, path: Path | None = None) -> CheckpointLog:
    """The engine's writable log: key <data_dir>/checkpoint_key.pem (created on first start), log at
    `path` (default <data_dir>/checkpoints.jsonl)."""
    return CheckpointLog(path or data_dir / LOG_FILE, private_key=load_or_create_key(data_dir))


# -- the engine's side ----------------------------------------------------------------------------


class Checkpointer:
    """Writes the journal head to the log at most once per `interval_s` while commits keep coming,
    and once more at close; the order path only calls `note` (a tuple store on the event loop).

    The file append (sign + write + fsync) runs in a worker thread (asyncio.to_thread) from one
    background task fed by the latest head, never on the event loop thread."""

    def __init__(
        self,
        log: CheckpointLog,
        *,
        interval_s: float = 1.0,
        now: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.interval_s = interval_s
        self._now = now or (lambda: datetime.now(UTC))
        self._monotonic = monotonic
        self._head: tuple[int, str] | None = None
        self._written: tuple[int, str] | None = None
        self._last_write = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.writes = 0
        self.errors = 0
        self.last_error: str | None = None

    @property
    def head(self) -> tuple[int, str] | None:
        return self._head

    def note(self, seq: int, hash: str) -> None:
        """After a commit batch, on the event loop: the new head (seq, hash). Never blocks."""
        if self._closed or (self._head is not None and seq <= self._head[0]):
            return
        self._head = (seq, hash)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="journal-checkpointer")

    async def _run(self) -> None:
        while self._head is not None and self._head != self._written:
            wait = self._last_write + self.interval_s - self._monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            head = self._head
            await asyncio.to_thread(self._write, head)

    def _write(self, head: tuple[int, str]) -> None:
        self._last_write = self._monotonic()
        try:
            self.log.append(head[0], head[1], self._now())
        except Exception as exc:  # a full disk must not stop trading: retry on the next interval
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.error("journal checkpoint at seq %s failed: %s", head[0], self.last_error)
            return
        self.writes += 1
        self._written = head

    def flush(self) -> None:
        """Write the latest head now if it is not written yet (blocking; for close and tests)."""
        head = self._head
        if head is not None and head != self._written:
            self._write(head)

    async def close(self) -> None:
        """Stop the background task and write the final head (call after the last commit)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.flush)
