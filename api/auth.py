"""Operators and their bearer tokens: stored as SHA-256 hashes in `<data-dir>/operators.json`.

Writers (`propbot operators add`, first start) take an exclusive flock on `operators.json.lock` and
replace the file atomically, so parallel adds all persist and a rotation (adding an existing id again)
drops the old token in the same replace. A group- or world-writable store is refused: anyone who can
write it can mint an admin token.

Roles grant permissions cumulatively where it makes sense: viewer reads; trader reads and trades;
auditor reads and audits (journal query, export, verify); admin may do everything, session control included.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "trader": frozenset({"read", "trade"}),
    "auditor": frozenset({"read", "audit"}),
    # "approve": may be the second operator of the two-man rule (the approver a token names)
    "admin": frozenset({"read", "trade", "audit", "session", "approve"}),
}
OPERATOR_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TOKEN_PREFIX = "pbt_"


class OperatorError(ValueError):
    """A bad operator id, role or store file."""


@dataclass(frozen=True, slots=True)
class Operator:
    id: str
    role: str

    def may(self, permission: str) -> bool:
        return permission in ROLES.get(self.role, frozenset())


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return _TOKEN_PREFIX + secrets.token_urlsafe(32)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600 from creation, no window where it is wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())  # the rename must never expose a file whose content is not on disk
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise ValueError("a key is given twice")  # which of the two would count is a guess
    return dict(pairs)


def _valid_row(r: Any) -> bool:
    return (
        isinstance(r, dict)
        and isinstance(r.get("id"), str)
        and bool(OPERATOR_ID.match(r["id"]))
        and r.get("role") in ROLES
        and isinstance(r.get("token_sha256"), str)
        and bool(_SHA256.match(r["token_sha256"]))
    )


def _parse_rows(path: Path, data: bytes) -> list[dict[str, Any]]:
    """Raises OperatorError: not JSON, a duplicate key or id, or a row with a bad id, role or hash."""
    try:
        rows = json.loads(data.decode("utf-8"), object_pairs_hook=_unique)["operators"]
        if not isinstance(rows, list) or not all(_valid_row(r) for r in rows):
            raise TypeError
        if len({r["id"] for r in rows}) != len(rows):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise OperatorError(f"{path}: not a valid operators file") from None
    return rows


def _read_store(path: Path) -> bytes | None:
    """The file's bytes (None when absent); refused when group- or world-writable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OperatorError(f"{path}: cannot read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise OperatorError(
                f"{path} is writable by group or others (mode {stat.S_IMODE(mode):04o}); "
                f"run: chmod 600 {path}"
            )
        return fh.read()


class OperatorStore:
    """operators.json, re-read when it changes on disk (so `propbot operators add` works while serving)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: bytes | None = None
        self._rows: list[dict[str, Any]] = []
        self._tokens: list[tuple[bytes, Operator]] = []  # (token_sha256 as ASCII bytes, operator) per row
        self._stat_key: tuple[int, ...] | None = None

    def _load(self) -> list[dict[str, Any]]:
        """Raises OperatorError: unreadable, invalid, or group/world-writable store."""
        with self._lock:
            # A write is an os.replace, so a new inode: (inode, ctime, mtime, size) changes with every
            # rotation, even one of the same size within one mtime tick, and costs one stat per request
            # instead of a read; the bytes then decide whether to re-parse
            try:
                st = os.stat(self.path)
                key: tuple[int, ...] | None = (
                    st.st_ino,
                    st.st_ctime_ns,
                    st.st_mtime_ns,
                    st.st_size,
                    st.st_mode,
                )
            except FileNotFoundError:
                key = None
            if key is not None and key == self._stat_key:
                return self._rows
            self._stat_key = None  # set again only once this read succeeded: a refusal is not cached
            data = _read_store(self.path)
            if data is None:
                self._data, self._rows, self._tokens = None, [], []
            elif data != self._data:
                self._rows, self._data = _parse_rows(self.path, data), data
                self._tokens = [
                    (r["token_sha256"].encode(), Operator(r["id"], r["role"])) for r in self._rows
                ]
            self._stat_key = key
            return self._rows

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise writers across processes (a flock on a sibling lock file, never on the data file,
        which os.replace swaps out from under any lock held on it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def find(self, operator_id: str) -> Operator | None:
        """The operator with this id, compared case-insensitively ("Bob" and "bob" are one person)."""
        wanted = operator_id.casefold()
        return next((o for o in self.operators() if o.id.casefold() == wanted), None)

    def operators(self) -> list[Operator]:
        return [Operator(r["id"], r["role"]) for r in self._load()]

    def authenticate(self, token: str) -> Operator | None:
        """Compare against every stored hash in constant time (no early exit reveals which one matched)."""
        digest = token_hash(token).encode()
        found: Operator | None = None
        self._load()
        for stored, operator in self._tokens:
            if hmac.compare_digest(digest, stored):
                found = operator
        return found

    def add(self, operator_id: str, role: str) -> str:
        """Create an operator, or rotate its token (the old one stops working in the same atomic
        replace); returns the new token, shown only this once.

        Raises:
            OperatorError: bad id or role, or an unusable store file.
        """
        if not OPERATOR_ID.match(operator_id):
            raise OperatorError("operator id must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if role not in ROLES:
            raise OperatorError(f"role must be one of {', '.join(sorted(ROLES))}")
        token = new_token()
        with self._exclusive():
            # Re-read under the lock: a cached copy would drop an operator another process just added
            data = _read_store(self.path)
            rows = [] if data is None else _parse_rows(self.path, data)
            rows = [r for r in rows if r["id"] != operator_id]
            rows.append(
                {
                    "id": operator_id,
                    "role": role,
                    "token_sha256": token_hash(token),
                    "created_at": datetime.now(UTC).isoformat(),
                }
            )
            write_private(self.path, json.dumps({"operators": rows}, indent=2) + "\n")
        return token


def ensure_first_operators(data_dir: Path) -> Path | None:
    """First start without operators: create `admin` and `trader` and write their tokens to a 0600
    tokens.txt. Returns that file's path, or None when operators already exist."""
    store = OperatorStore(data_dir / "operators.json")
    if store.operators():
        return None
    lines = [
        f"{oid} {role} {store.add(oid, role)}" for oid, role in (("admin", "admin"), ("trader", "trader"))
    ]
    path = data_dir / "tokens.txt"
    write_private(
        path, "# operator role token (use as: Authorization: Bearer <token>)\n" + "\n".join(lines) + "\n"
    )
    return path
