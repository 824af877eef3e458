"""Operators and their bearer tokens: stored as SHA-256 hashes in `<data-dir>/operators.json`.

Roles grant permissions cumulatively where it makes sense: viewer reads; trader reads and trades;
auditor reads and audits (journal query, export, verify); admin may do everything, session control included.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "trader": frozenset({"read", "trade"}),
    "auditor": frozenset({"read", "audit"}),
    "admin": frozenset({"read", "trade", "audit", "session"}),
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
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text)
    os.replace(tmp, path)


class OperatorStore:
    """operators.json, re-read when it changes on disk (so `propbot operators add` works while serving)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._rows: list[dict[str, Any]] = []

    def _load(self) -> list[dict[str, Any]]:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._rows = None, []
                return self._rows
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    rows = data["operators"]
                    assert isinstance(rows, list)
                except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
                    raise OperatorError(f"{self.path}: not a valid operators file") from exc
                self._stamp, self._rows = stamp, rows
            return self._rows

    def operators(self) -> list[Operator]:
        return [Operator(r["id"], r["role"]) for r in self._load()]

    def authenticate(self, token: str) -> Operator | None:
        """Compare against every stored hash in constant time (no early exit reveals which one matched)."""
        digest = token_hash(token).encode()
        found: Operator | None = None
        for row in self._load():
            if hmac.compare_digest(digest, str(row.get("token_sha256", "")).encode()):
                found = Operator(row["id"], row["role"])
        return found

    def add(self, operator_id: str, role: str) -> str:
        """Create (or replace the token of) an operator; returns the new token, shown only this once.

        Raises:
            OperatorError: bad id or role.
        """
        if not OPERATOR_ID.match(operator_id):
            raise OperatorError("operator id must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if role not in ROLES:
            raise OperatorError(f"role must be one of {', '.join(sorted(ROLES))}")
        token = new_token()
        rows = [r for r in self._load() if r["id"] != operator_id]
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
