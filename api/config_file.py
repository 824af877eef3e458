"""The shape of `configs/config.<profile>.yaml`, checked strictly: an unknown or misspelt key is an error."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from engine.types import parse_decimal


class ConfigError(ValueError):
    """The configuration (file, environment or arguments) is not usable; the message says why."""


def _decimal(value: Any) -> Decimal:
    return parse_decimal(value, "value")


Dec = Annotated[Decimal, BeforeValidator(_decimal)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Routing(_Model):
    base_url_rest: str = Field(pattern=r"^https?://\S+$")
    base_url_ws: str = Field(pattern=r"^wss?://\S+$")


class Approvals(_Model):
    two_man_rule: bool = True
    require_token: bool = True
    ttl_s: float = Field(900.0, gt=0, le=86400)
    # operator id -> Ed25519 public key (raw 32 bytes, base64); private keys never live here
    public_keys: dict[str, str] = Field(default_factory=dict)


class Window(_Model):
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class Preflight(_Model):
    time_skew_ms_max: float = Field(250.0, gt=0)
    ping_timeout_ms: float = Field(1500.0, gt=0)
    permissions_required: list[str] = Field(default_factory=lambda: ["SPOT_TRADE"])
    maintenance_windows: list[Window] = Field(default_factory=list)
    # Measured in the background; arming and live orders need checks younger than these ages
    max_age_s: float = Field(5.0, gt=0, le=300)
    account_max_age_s: float = Field(60.0, gt=0, le=3600)
    refresh_s: float = Field(1.0, gt=0, le=60)
    account_refresh_s: float = Field(20.0, gt=0, le=1800)


class Risk(_Model):
    max_order_notional: Dec = Decimal("100000")
    max_order_qty: Dec = Decimal("1000")
    price_collar_pct: Dec = Decimal("10")
    max_open_orders: int = Field(200, ge=1)
    max_orders_per_minute: int = Field(600, ge=1)
    max_position: dict[str, Dec] = Field(default_factory=dict)  # base asset -> cap, e.g. {BTC: "5"}


class Ws(_Model):
    enabled: bool = False
    stream: Literal["bookTicker", "aggTrade"] = "bookTicker"
    symbol: str | None = Field(None, pattern=r"^[A-Z0-9]{2,20}$")  # default: the first symbol
    stall_after_s: float = Field(5.0, gt=0)
    error_after_s: float = Field(15.0, gt=0)
    cancel_on_disconnect: bool = True


class Orders(_Model):
    unknown_grace_s: float = Field(60.0, gt=0)
    reconcile_interval_s: float = Field(0.25, gt=0)


class Binance(_Model):
    recv_window_ms: int = Field(5000, ge=1, le=60000)
    poll_interval_s: float = Field(2.0, ge=0)
    timeout_s: float = Field(10.0, gt=0)


class Paper(_Model):
    price_interval_s: float = Field(1.0, ge=0)  # how often the paper venue moves its prices; 0 = never
    seed: int | None = None


class Journal(_Model):
    url: str | None = None


class Server(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)


class ConfigFile(_Model):
    profile: Literal["paper", "testnet", "live"]
    exchange: Literal["paper", "binance_spot"]
    routing: Routing | None = None
    safe_mode: bool = True
    symbols: list[Annotated[str, Field(pattern=r"^[A-Z0-9]{2,20}$")]] = Field(
        default_factory=lambda: ["BTCUSDT", "ETHUSDT", "BNBUSDT"], min_length=1
    )
    approvals: Approvals = Field(default_factory=Approvals)
    preflight: Preflight = Field(default_factory=Preflight)
    risk: Risk = Field(default_factory=Risk)
    ws: Ws = Field(default_factory=Ws)
    orders: Orders = Field(default_factory=Orders)
    binance: Binance = Field(default_factory=Binance)
    paper: Paper = Field(default_factory=Paper)
    journal: Journal = Field(default_factory=Journal)
    server: Server = Field(default_factory=Server)
    data_dir: str | None = None


def load_config_file(path: Path) -> ConfigFile:
    """Read and check one YAML config.

    Raises:
        ConfigError: unreadable file, bad YAML, unknown keys, wrong types or an inconsistent profile.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a YAML mapping")
    try:
        cfg = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{path}: {where}: {first['msg']}{more}") from None
    if (cfg.profile == "paper") != (cfg.exchange == "paper"):
        raise ConfigError(f"{path}: profile {cfg.profile} cannot use exchange {cfg.exchange}")
    if cfg.exchange == "binance_spot" and cfg.routing is None:
        raise ConfigError(f"{path}: routing.base_url_rest and routing.base_url_ws are required")
    if cfg.ws.stall_after_s >= cfg.ws.error_after_s:
        raise ConfigError(f"{path}: ws.stall_after_s must be less than ws.error_after_s")
    return cfg
