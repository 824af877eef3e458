"""Typed, frozen engine settings. Loading them from YAML and the environment is the api layer's job."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import time
from decimal import Decimal

from engine.client_ids import DEFAULT_PREFIX, check_prefix


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_order_notional: Decimal = Decimal("100000")
    max_order_qty: Decimal = Decimal("1000")
    price_collar_pct: Decimal = Decimal("10")  # a LIMIT price this far from the last price is refused
    max_open_orders: int = 200
    max_orders_per_minute: int = 600
    # base asset -> the most of it we may hold once every open BUY fills (e.g. {"BTC": Decimal("5")})
    max_position: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A daily UTC window, e.g. 00:00–00:05; start > end wraps midnight."""

    start: time
    end: time

    def active(self, now: time) -> bool:
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end


@dataclass(frozen=True, slots=True)
class PreflightSettings:
    time_skew_ms_max: float = 250.0
    ping_timeout_ms: float = 1500.0
    # The config's names; Binance reports "SPOT", not "SPOT_TRADE" (engine.guardrails.preflight maps them)
    permissions_required: tuple[str, ...] = ("SPOT_TRADE",)
    maintenance_windows: tuple[MaintenanceWindow, ...] = ()
    # The verdict is measured in the background and read without I/O; a check older than its age fails
    max_age_s: float = 5.0  # clock and ping
    account_max_age_s: float = 60.0  # account, permissions, key restrictions, symbol status
    refresh_s: float = 1.0
    account_refresh_s: float = 20.0


@dataclass(frozen=True, slots=True)
class ApprovalSettings:
    two_man_rule: bool = True
    require_token: bool = True
    ttl_s: float = 900.0
    # operator id -> Ed25519 public key (raw 32 bytes, base64); the engine never holds private keys
    public_keys: dict[str, str] = field(default_factory=dict)
    # operator id -> keys rotated out: only to re-verify the approvals they signed in the journal (replay,
    # verify); a new token is checked against public_keys alone, so a rotated-out key arms nothing
    retired_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    profile: str = "paper"  # paper | testnet | live
    safe_mode: bool = True
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
    risk: RiskLimits = field(default_factory=RiskLimits)
    preflight: PreflightSettings = field(default_factory=PreflightSettings)
    approvals: ApprovalSettings = field(default_factory=ApprovalSettings)
    # How long "not found" may mean "not visible yet" for an order whose send outcome is unknown
    unknown_grace_s: float = 60.0
    reconcile_interval_s: float = 0.25
    # Orders on symbols outside `symbols` skip the price collar's fresh price: refused unless enabled
    allow_unlisted_symbols: bool = False
    # Every client order id this engine places starts with it; orders without it are foreign (never
    # adopted or cancelled, reported in /api/status). engine.client_ids has the rules
    client_order_id_prefix: str = DEFAULT_PREFIX
    # A foreign working order on the account puts the session on HOLD (else it is only reported)
    hold_on_foreign_orders: bool = False

    def __post_init__(self) -> None:
        check_prefix(self.client_order_id_prefix)  # fail closed: an invalid prefix never starts an engine


def fingerprint(settings: EngineSettings) -> str:
    """SHA-256 of the settings in force (risk caps, preflight, approver keys, safe mode): arming and going
    live journal it, so an auditor can tell which configuration a LIVE session traded under."""
    text = json.dumps(asdict(settings), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
