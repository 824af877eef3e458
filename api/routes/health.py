"""Liveness and readiness; no authentication, no detail worth hiding."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    """Liveness: the process answers."""
    return {"ok": True, "status": "alive"}


@router.get("/readyz", response_model=None)
async def readyz(runtime: RuntimeDep) -> JSONResponse | dict[str, Any]:
    """Readiness: journal verified, venue reconciled, orders accepted."""
    if runtime.ready:
        return {"ok": True, "status": "ready"}
    reason = runtime.start_error.reason if runtime.start_error else "not_ready"
    return JSONResponse({"ok": False, "reason": reason, "detail": "not ready"}, status_code=503)
