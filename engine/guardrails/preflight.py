"""Preflight: the checks that must pass before arming, going live and every real order (docs/architecture.md).

The checks that need the venue run in the background (`PreflightMonitor`): the clock on a short timer, the
account, key and symbol checks on a longer one, each kept as a time-stamped `Check`. Arming, going live and
each LIVE order read the latest verdict without any network I/O and require it to be fresh and passing;
a stale check fails as `stale`. The monitor is the component that detects a fault, so it alone decides
the HOLD, once per episode (an episode ends when every check passes again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from engine.config import PreflightSettings
from engine.errors import ExchangeError, ExchangeUnavailable
from engine.ports import Clock, ExchangePort

log = logging.getLogger(__name__)

# The config speaks the client's names; Binance reports account permissions as SPOT, MARGIN, …
PERMISSION_ALIASES = {"SPOT_TRADE": "SPOT", "MARGIN_TRADE": "MARGIN"}
# Failed checks that make trading unsafe in any session state (HOLD), not only once armed
HOLDING_CHECKS = frozenset({"permissions", "can_trade", "account"})
ACCOUNT_READS = ("account", "keys", "symbols")  # the reads of `account_checks`, in order


def _backing_off(exc: ExchangeError) -> bool:
    """The venue client did not ask (a 429's Retry-After, the rate governor's headroom): nothing was
    measured, so nothing failed. The last measurement stands and ages; past its allowed age it fails as
    stale, which refuses arming and LIVE orders without a HOLD for a back-off the venue asked for."""
    return isinstance(exc, ExchangeUnavailable) and exc.reason == "RATE_LIMIT"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: Any = None
    at_s: float = 0.0  # epoch seconds of the measurement; 0 for checks computed when read


def skew_status(skew_ms: float, settings: PreflightSettings) -> str:
    return "OK" if abs(skew_ms) <= settings.time_skew_ms_max else "WARN"


def missing_permissions(have: tuple[str, ...], settings: PreflightSettings) -> list[str]:
    return [p for p in settings.permissions_required if PERMISSION_ALIASES.get(p, p) not in have]


async def clock_checks(
    exchange: ExchangePort, settings: PreflightSettings, now_s: float
) -> list[Check] | None:
    """None: not measured (the client is backing off, `_backing_off`)."""
    try:
        ping = await exchange.ping()
    except ExchangeError as exc:
        if _backing_off(exc):
            return None
        failed = {"reason": exc.reason, "detail": str(exc)}
        return [Check("ping", False, failed, now_s), Check("clock_skew", False, failed, now_s)]
    return [
        Check("clock_skew", abs(ping.clock_skew_ms) <= settings.time_skew_ms_max,
              {"clock_skew_ms": ping.clock_skew_ms, "max": settings.time_skew_ms_max}, now_s),
        Check("ping", ping.rtt_ms <= settings.ping_timeout_ms, {"rtt_ms": ping.rtt_ms}, now_s),
    ]  # fmt: skip


async def account_checks(
    exchange: ExchangePort, settings: PreflightSettings, symbols: tuple[str, ...], now_s: float
) -> dict[str, list[Check]]:
    """The checks of each read that was measured ("account", "keys", "symbols"); a read that met the
    client backing off (`_backing_off`) and the reads after it are missing: not measured, while what the
    reads before it measured (an unreachable venue, a missing permission) stands and may hold."""
    groups: dict[str, list[Check]] = {}
    try:
        account = await exchange.account()
        missing = missing_permissions(account.permissions, settings)
        groups["account"] = [
            Check("can_trade", account.can_trade, None, now_s),
            Check("permissions", not missing, {"missing": missing, "have": list(account.permissions)}, now_s),
        ]
    except ExchangeError as exc:
        if _backing_off(exc):
            return groups
        groups["account"] = [Check("account", False, {"reason": exc.reason, "detail": str(exc)}, now_s)]
    keys = await _key_checks(exchange)
    if keys is None:
        return groups
    groups["keys"] = [replace(c, at_s=now_s) for c in keys]
    try:
        rules = await exchange.symbol_rules()
        halted = {s: rules[s].status for s in symbols if s in rules and rules[s].status != "TRADING"}
    except ExchangeError as exc:
        if _backing_off(exc):
            return groups
        halted = {"*": exc.reason}
    groups["symbols"] = [Check("symbols", not halted, {"not_trading": halted}, now_s)]
    return groups


def maintenance_check(settings: PreflightSettings, now: datetime) -> Check:
    active = [f"{w.start}-{w.end}" for w in settings.maintenance_windows if w.active(now.time())]
    return Check("maintenance", not active, {"windows": active})


def risk_headroom(open_now: int, limit: int) -> Check:
    """Preflight's risk item: room for at least one more order under the open-orders cap."""
    return Check("risk", open_now < limit, {"open_orders": open_now, "max_open_orders": limit})


async def _key_checks(exchange: ExchangePort) -> list[Check] | None:
    """Live keys must trade, must not withdraw, and must be IP-restricted; venues without the endpoint
    (paper, Spot Testnet) answer None and are not checked. None: not measured (`_backing_off`)."""
    try:
        r = await exchange.key_restrictions()
    except ExchangeError as exc:
        if _backing_off(exc):
            return None
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


def _is_stale(check: Check) -> bool:
    return not check.ok and isinstance(check.detail, dict) and "stale_s" in check.detail


def _named(check: Check) -> str:
    """A check's name, with the venue's reason when it failed on an error (e.g. "account (IP_BANNED)")."""
    reason = check.detail.get("reason") if isinstance(check.detail, dict) else None
    return f"{check.name} ({reason})" if reason else check.name


def failures(checks: list[Check]) -> list[dict[str, Any]]:
    return [{"check": c.name, "detail": c.detail} for c in checks if not c.ok]


HoldFn = Callable[[str], Awaitable[bool]]


class PreflightMonitor:
    """Runs the venue checks in the background and serves the latest verdict without I/O."""

    def __init__(
        self,
        exchange: ExchangePort,
        settings: PreflightSettings,
        symbols: tuple[str, ...],
        clock: Clock,
        hold: HoldFn,
        holds_now: Callable[[], bool],
    ) -> None:
        self._exchange = exchange
        self._settings = settings
        self._symbols = symbols
        self._clock = clock
        self._hold = hold  # journal a HOLD unless already on HOLD; True when it wrote one
        self._holds_now = holds_now  # True while the session state makes any failure a HOLD (ARMED, LIVE)
        self._clock_checks: list[Check] = []
        # Per read (`account_checks`): a refresh that measured only some reads replaces only theirs
        self._account_groups: dict[str, list[Check]] = {}
        self._episode = False  # a HOLD was journaled for the current run of failures
        self._refresh_lock = asyncio.Lock()
        self.refreshes = 0
        self.last_error: str | None = None
        self.deferred: list[str] = []  # measurements the last refresh could not take (backing off)

    def _now_s(self) -> float:
        return self._clock.now().timestamp()

    @property
    def _account_checks(self) -> list[Check]:
        return [c for group in self._account_groups.values() for c in group]

    # -- reading (no I/O) ----------------------------------------------------------------------

    def verdict(self, risk: Check) -> list[Check]:
        """Every check as of now: a measured check older than its allowed age fails as stale."""
        now = self._clock.now()
        now_s = now.timestamp()
        out: list[Check] = []
        measured = [(c, self._settings.max_age_s) for c in self._clock_checks] + [
            (c, self._settings.account_max_age_s) for c in self._account_checks
        ]
        if not self._clock_checks:
            out.append(Check("clock_skew", False, {"stale": "never measured"}))
        if len(self._account_groups) < len(ACCOUNT_READS):  # a read never measured: no verdict on it
            out.append(Check("account", False, {"stale": "never measured"}))
        for check, max_age in measured:
            age = now_s - check.at_s
            # A check from the future (the wall clock stepped back since it was measured) has no
            # known age: stale until measured again, never fresh for as long as the step was
            if not 0 <= age <= max_age:  # also catches a NaN age
                out.append(
                    Check(check.name, False, {"stale_s": round(age, 3), "max_age_s": max_age}, check.at_s)
                )
            else:
                out.append(check)
        out.append(maintenance_check(self._settings, now))
        out.append(risk)
        return out

    def failures(self, risk: Check) -> list[dict[str, Any]]:
        return failures(self.verdict(risk))

    def status(self) -> dict[str, Any]:
        """For /api/status: the latest measurements and how old they are."""
        now_s = self._now_s()
        checks = self._clock_checks + self._account_checks
        oldest = min((now_s - c.at_s for c in checks), default=None)
        return {
            "refreshes": self.refreshes,
            "age_s": round(oldest, 3) if oldest is not None else None,
            "last_error": self.last_error,
            "deferred": self.deferred,
            "checks": [{"check": c.name, "ok": c.ok, "detail": c.detail, "at_s": c.at_s} for c in checks],
        }

    # -- measuring (background) ----------------------------------------------------------------

    async def refresh(self, *, clock: bool = True, account: bool = True) -> None:
        """Measure now (the timer calls this; so may an operator's explicit request, never an order)."""
        async with self._refresh_lock:
            now_s = self._now_s()
            deferred = []
            if clock:
                measured = await clock_checks(self._exchange, self._settings, now_s)
                if measured is None:
                    deferred.append("clock")
                else:
                    self._clock_checks = measured
            if account:
                found = await account_checks(self._exchange, self._settings, self._symbols, now_s)
                if len(found) < len(ACCOUNT_READS):
                    deferred.append("account")
                self._account_groups.update(found)
            self.deferred = deferred
            self.refreshes += 1
        await self.review()

    async def review(self, risk: Check | None = None) -> None:
        """HOLD once per episode when the verdict fails in a way that demands it."""
        checks = self._clock_checks + self._account_checks + ([risk] if risk else [])
        failed = [c for c in checks if not c.ok]
        # A back-off that lasts past a measurement's allowed age leaves no fresh verdict: armed or live,
        # that is a failed check like any other (fail closed), not a LIVE session refusing every order
        # while it waits for a venue that may never answer again
        stale = [c for c in self.verdict(Check("risk", True)) if _is_stale(c)] if self.deferred else []
        if not failed and not stale:
            self._episode = False
            return
        holding = [c for c in failed if c.name in HOLDING_CHECKS]
        if self._episode or not (holding or self._holds_now()):
            return
        named = [_named(c) for c in (holding or failed)] + [f"{c.name} (stale: backing off)" for c in stale]
        await self._hold(f"preflight_failed: {', '.join(named)}")
        self._episode = True  # only once the HOLD is durable: a failed commit is tried again next time

    async def hold_for(self, failed: list[dict[str, Any]]) -> None:
        """A guarded action was refused on a failing verdict: HOLD, once per episode."""
        if failed and not self._episode:
            await self._hold(f"preflight_failed: {', '.join(f['check'] for f in failed)}")
            self._episode = True

    async def run(self) -> None:
        """Forever: the clock every `refresh_s`, the rest every `account_refresh_s`."""
        next_account = 0.0
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() >= next_account
            try:
                await self.refresh(clock=True, account=due)
                self.last_error = None
            except Exception as exc:  # caught here so the supervisor's restart is the rare case
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("preflight refresh failed: %s", self.last_error)
            if due:
                next_account = loop.time() + self._settings.account_refresh_s
            await asyncio.sleep(self._settings.refresh_s)
