"""Preflight: the checks that must pass before arming, going live and every real order (DESIGN.md §5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.config import PreflightSettings
from engine.errors import ExchangeError
from engine.ports import ExchangePort

# The config speaks the client's names; Binance reports account permissions as SPOT, MARGIN, …
PERMISSION_ALIASES = {"SPOT_TRADE": "SPOT", "MARGIN_TRADE": "MARGIN"}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: Any = None


def skew_status(skew_ms: float, settings: PreflightSettings) -> str:
    return "OK" if abs(skew_ms) <= settings.time_skew_ms_max else "WARN"


def missing_permissions(have: tuple[str, ...], settings: PreflightSettings) -> list[str]:
    return [p for p in settings.permissions_required if PERMISSION_ALIASES.get(p, p) not in have]


async def run_preflight(
    exchange: ExchangePort,
    settings: PreflightSettings,
    now: datetime,
    symbols: tuple[str, ...],
    risk_ok: Check,
) -> list[Check]:
    """Every check, each OK or not with a detail; I/O goes only through the exchange port."""
    checks: list[Check] = []
    try:
        ping = await exchange.ping()
        checks.append(
            Check("clock_skew", abs(ping.clock_skew_ms) <= settings.time_skew_ms_max,
                  {"clock_skew_ms": ping.clock_skew_ms, "max": settings.time_skew_ms_max})
        )  # fmt: skip
        checks.append(Check("ping", ping.rtt_ms <= settings.ping_timeout_ms, {"rtt_ms": ping.rtt_ms}))
    except ExchangeError as exc:
        checks.append(Check("ping", False, {"reason": exc.reason, "detail": str(exc)}))
    try:
        account = await exchange.account()
        checks.append(Check("can_trade", account.can_trade))
        missing = missing_permissions(account.permissions, settings)
        checks.append(
            Check("permissions", not missing, {"missing": missing, "have": list(account.permissions)})
        )
    except ExchangeError as exc:
        checks.append(Check("account", False, {"reason": exc.reason, "detail": str(exc)}))
    checks.extend(await _key_checks(exchange))
    active = [f"{w.start}-{w.end}" for w in settings.maintenance_windows if w.active(now.time())]
    try:
        rules = await exchange.symbol_rules()
        halted = {s: rules[s].status for s in symbols if s in rules and rules[s].status != "TRADING"}
    except ExchangeError as exc:
        halted = {"*": exc.reason}
    checks.append(Check("maintenance", not active and not halted, {"windows": active, "symbols": halted}))
    checks.append(risk_ok)
    return checks


def risk_headroom(open_now: int, limit: int) -> Check:
    """Preflight's risk item: room for at least one more order under the open-orders cap."""
    return Check("risk", open_now < limit, {"open_orders": open_now, "max_open_orders": limit})


async def _key_checks(exchange: ExchangePort) -> list[Check]:
    """Live keys must trade, must not withdraw, and must be IP-restricted; venues without the endpoint
    (paper, Spot Testnet) answer None and are not checked."""
    try:
        r = await exchange.key_restrictions()
    except ExchangeError as exc:
        return [Check("key_restrictions", False, {"reason": exc.reason, "detail": str(exc)})]
    if r is None:
        return []
    wrong = [
        name
        for name, ok in (
            ("enableSpotAndMarginTrading must be on", r.get("enableSpotAndMarginTrading") is True),
            ("enableWithdrawals must be off", r.get("enableWithdrawals") is False),
            ("ipRestrict must be on", r.get("ipRestrict") is True),
        )
        if not ok
    ]
    return [Check("key_restrictions", not wrong, {"problems": wrong})]


def failures(checks: list[Check]) -> list[dict[str, Any]]:
    return [{"check": c.name, "detail": c.detail} for c in checks if not c.ok]
