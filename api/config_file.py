"""The shape of `configs/config.<profile>.yaml`, checked strictly: an unknown or misspelt key is an error."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError

from engine.client_ids import DEFAULT_PREFIX, PREFIX_PATTERN
from engine.types import parse_decimal


class ConfigError(ValueError):
    """The configuration (file, environment or arguments) is not usable; the message says why."""


_BOOL_TAG = "tag:yaml.org,2002:bool"


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)
    and knows only `true`/`false` as booleans (YAML 1.1's yes/no/on/off stay strings, so a StrictBool
    field refuses them instead of reading `no` as False)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key: SafeConstructor reports it below
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {str(key)[:40]!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def construct_strict_bool(self, node: yaml.Node) -> bool:
        value = self.construct_scalar(node)
        if value not in ("true", "false"):
            raise yaml.constructor.ConstructorError(
                None, None, "a boolean must be true or false", node.start_mark
            )
        return bool(value == "true")


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|false)$"), list("tf"))
_StrictLoader.add_constructor(_BOOL_TAG, _StrictLoader.construct_strict_bool)


def _decimal(value: Any) -> Decimal:
    try:
        return parse_decimal(value, "value")
    except ValueError:
        # parse_decimal's message quotes the value; the error already names the key and line
        raise ValueError('must be a finite, non-negative decimal (a quoted string such as "0.5")') from None


Dec = Annotated[Decimal, BeforeValidator(_decimal)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Routing(_Model):
    base_url_rest: str = Field(pattern=r"^https?://\S+$")
    base_url_ws: str = Field(pattern=r"^wss?://\S+$")
    # The WebSocket API (user data stream), e.g. wss://ws-api.binance.com:443/ws-api/v3; absent: fills
    # come from polling only
    base_url_ws_api: str | None = Field(None, pattern=r"^wss?://\S+/ws-api/v3$")


class Approvals(_Model):
    two_man_rule: StrictBool = True
    require_token: StrictBool = True
    ttl_s: float = Field(900.0, gt=0, le=86400)
    # operator id -> Ed25519 public key (raw 32 bytes, base64); private keys never live here
    public_keys: dict[str, str] = Field(default_factory=dict)
    # operator id -> public keys rotated out of public_keys: replay and verify still accept the approvals
    # they signed in the journal; arm never accepts a new token signed with one
    retired_keys: dict[str, list[str]] = Field(default_factory=dict)


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
    enabled: StrictBool = False
    stream: Literal["bookTicker", "aggTrade"] = "bookTicker"
    symbol: str | None = Field(None, pattern=r"^[A-Z0-9]{2,20}$")  # default: the first symbol
    stall_after_s: float = Field(5.0, gt=0)
    error_after_s: float = Field(15.0, gt=0)
    # without a working connection this long, cancel_on_disconnect fires (once per outage)
    disconnect_grace_s: float = Field(10.0, ge=0)
    cancel_on_disconnect: StrictBool = True


class Orders(_Model):
    unknown_grace_s: float = Field(60.0, gt=0)
    reconcile_interval_s: float = Field(0.25, gt=0)


# enums.md "STP Modes"
StpMode = Literal["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT", "TRANSFER"]


class Binance(_Model):
    recv_window_ms: int = Field(5000, ge=1, le=60000)
    poll_interval_s: float = Field(2.0, ge=0)
    timeout_s: float = Field(10.0, gt=0)
    # The API key's type: HMAC (secret) or ED25519 (private key PEM; Binance's recommended kind)
    key_type: Literal["HMAC", "ED25519"] = "HMAC"
    # selfTradePreventionMode sent with every order; None: the symbol's defaultSelfTradePreventionMode.
    # Checked against every configured symbol's allowedSelfTradePreventionModes at connect.
    self_trade_prevention_mode: StpMode | None = None
    # Every client order id the engine places starts with it (Binance's id alphabet, 1-20 characters so a
    # generated id keeps 16 random ones within 36); orders without it are foreign: never adopted or
    # cancelled, journaled once and shown in /api/status. An operator's newClientOrderId must carry it.
    client_order_id_prefix: str = Field(DEFAULT_PREFIX, pattern=PREFIX_PATTERN.pattern)
    # A foreign working order on the account puts the session on HOLD (default: reported only)
    hold_on_foreign_orders: StrictBool = False


class Paper(_Model):
    price_interval_s: float = Field(1.0, ge=0)  # how often the paper venue moves its prices; 0 = never
    seed: int | None = None


class Journal(_Model):
    url: str | None = None


class Relay(_Model):
    """The journal outbox relay inside the API process (docs/scale-out.md); absent: no relay here."""

    nats_url: str = Field(pattern=r"^(nats|tls)://")
    source: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    stream: str = Field("PROPBOT", pattern=r"^[A-Za-z0-9_-]{1,64}$")


class Server(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)


# An account id: a PostgreSQL schema name part (propbot_<id>) and an environment variable suffix
ACCOUNT_PATTERN = r"^[a-z][a-z0-9_]{0,29}$"


class ConfigFile(_Model):
    profile: Literal["paper", "testnet", "live"]
    # The account this engine serves (docs/scale-out.md): its journal schema, keys and data dir
    account: str | None = Field(None, pattern=ACCOUNT_PATTERN)
    exchange: Literal["paper", "binance_spot"]
    routing: Routing | None = None
    safe_mode: StrictBool = True
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
    relay: Relay | None = None
    data_dir: str | None = None


def load_config_file(path: Path) -> ConfigFile:
    """Read and check one YAML config.

    Raises:
        ConfigError: unreadable file, bad YAML, unknown keys, wrong types or an inconsistent profile.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} line {text_line(path, exc.start)}: not UTF-8") from None
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        raw = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "not valid YAML"
        raise ConfigError(f"{path}{line}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__})") from None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a YAML mapping")
    try:
        cfg = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        found = _line_of(root, first["loc"])
        at = f" line {found}" if found else ""
        raise ConfigError(f"{path}{at}: {where}: {first['msg']}{more}") from None

    def where_is(*loc: str) -> str:
        found = _line_of(root, loc)
        return f"{path} line {found}" if found else str(path)

    if (cfg.profile == "paper") != (cfg.exchange == "paper"):
        raise ConfigError(f"{where_is('exchange')}: profile {cfg.profile} cannot use exchange {cfg.exchange}")
    if cfg.exchange == "binance_spot" and cfg.routing is None:
        raise ConfigError(f"{path}: routing.base_url_rest and routing.base_url_ws are required")
    if cfg.ws.stall_after_s >= cfg.ws.error_after_s:
        raise ConfigError(
            f"{where_is('ws', 'stall_after_s')}: ws.stall_after_s must be less than ws.error_after_s"
        )
    return cfg


def text_line(path: Path, offset: int) -> int:
    """The 1-based line of a byte offset in a file."""
    return path.read_bytes().count(b"\n", 0, offset) + 1


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at a pydantic error location (the deepest one found)."""
    line: int | None = None
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if child is not None:
                key = next(k for k, v in node.value if v is child)
                line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line if line is not None else (node.start_mark.line + 1 if node is not None else None)
