"""GET /api/whoami: the caller's operator id, role and permissions (the status page shows what they allow)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.auth import ROLES
from api.deps import Reader

router = APIRouter(tags=["status"])


@router.get("/api/whoami")
async def whoami(op: Reader) -> dict[str, Any]:
    """Who this token belongs to and what the role may do (read, trade, audit, session, approve)."""
    return {"ok": True, "id": op.id, "role": op.role, "permissions": sorted(ROLES.get(op.role, ()))}
