"""GET /metrics: the Prometheus text exposition of this runtime's registry (api/metrics.py)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from api.deps import Reader, RuntimeDep
from api.metrics import CONTENT_TYPE
from api.routes.status import status

router = APIRouter(tags=["status"])


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(op: Reader, runtime: RuntimeDep) -> PlainTextResponse:
    """Prometheus metrics (text exposition format 0.0.4); names and units in docs/api.md."""
    # The component gauges are /api/status's own verdicts: the same read, measured in the background
    snapshot = await status(op, runtime)
    return PlainTextResponse(runtime.metrics.render(snapshot), media_type=CONTENT_TYPE)
