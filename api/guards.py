"""Guards the API runs around engine calls: the risk-headroom check and preflight before real orders."""

from __future__ import annotations

from engine.errors import PreflightFailed
from engine.guardrails.preflight import Check, failures
from engine.runtime import Engine


def risk_headroom(engine: Engine) -> Check:
    """Preflight's risk item: room for at least one more order under the open-orders cap."""
    limit = engine.settings.risk.max_open_orders
    open_now = len(engine.orders.open)
    return Check("risk", open_now < limit, {"open_orders": open_now, "max_open_orders": limit})


async def preflight_or_hold(engine: Engine, actor: str) -> None:
    """Before each real order (LIVE): every preflight check must pass, else HOLD and refuse.

    Raises:
        PreflightFailed: with the failed checks as detail; the session is on HOLD by then.
    """
    failed = failures(await engine.sessions.preflight(risk_headroom(engine)))
    if failed:
        await engine.sessions.hold(f"preflight_failed: {', '.join(f['check'] for f in failed)}", actor)
        raise PreflightFailed("preflight failed before a live order", detail=failed)
