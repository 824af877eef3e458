"""Settings: a YAML profile + the environment + an optional `.env`, turned into engine.config types.

Precedence, highest first: explicit arguments (the CLI's flags) > process environment > `.env` > YAML >
defaults. The paper profile never reads exchange keys. Secrets are SecretStr, so repr, str, logs and
error messages show `**********`, never the value.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import SecretStr

from api.config_file import ACCOUNT_PATTERN, ConfigError, ConfigFile, load_config_file
from api.dotenv import EnvFileError, read_env_file
from api.journal_url import is_sqlite, search_path_of, with_search_path
from engine.config import (
    ApprovalSettings,
    EngineSettings,
    MaintenanceWindow,
    PreflightSettings,
    RiskLimits,
)
from engine.journal import ENGINE_ID_PATTERN
from engine.outbox import default_source

log = logging.getLogger(__name__)

MAX_LEASE_ENGINE_ID = 63 - len("propbot:")  # engine.persistence.lease.APP_PREFIX in application_name

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
PROFILES = ("paper", "testnet", "live")
# The variables PropBot reads; set-but-empty in the process environment is refused for these only
_OURS = ("SAFE_MODE", "EXCHANGE_PROFILE")
_OUR_PREFIXES = ("PROPBOT_", "BINANCE_API_")
# The live profile's hard floor: Binance's official Spot endpoints only (scheme://netloc, exactly)
LIVE_REST = frozenset(
    f"https://{host}{port}"
    for host in ("api.binance.com", "api-gcp.binance.com", *(f"api{i}.binance.com" for i in range(1, 5)))
    for port in ("", ":443")
)
LIVE_WS = frozenset(
    {
        "wss://stream.binance.com:9443",
        "wss://stream.binance.com:443",
        "wss://stream.binance.com",
        "wss://data-stream.binance.vision",
        "wss://data-stream.binance.vision:443",
        "wss://ws-api.binance.com:443",
        "wss://ws-api.binance.com",
        "wss://ws-api.binance.com:9443",
    }
)
ALLOW_UNOFFICIAL = "PROPBOT_LIVE_ALLOW_UNOFFICIAL_HOSTS"

__all__ = [
    "CONFIG_DIR",
    "PROFILES",
    "ConfigError",
    "Location",
    "Settings",
    "WsSettings",
    "load_settings",
    "locate",
]


@dataclass(frozen=True, slots=True)
class WsSettings:
    enabled: bool
    stream: str
    symbol: str
    stall_after_s: float
    error_after_s: float
    cancel_on_disconnect: bool
    disconnect_grace_s: float


@dataclass(frozen=True)
class Settings:
    profile: str
    exchange: str  # "paper" | "binance_spot"
    config_path: Path
    engine: EngineSettings
    ws: WsSettings
    data_dir: Path
    db_url: str
    host: str = "127.0.0.1"
    port: int = 8000
    rest_url: str | None = None
    ws_url: str | None = None
    ws_api_url: str | None = None  # the WebSocket API (user data stream); None: polling only
    api_key: SecretStr | None = field(default=None, repr=False)
    api_secret: SecretStr | None = field(default=None, repr=False)
    key_type: str = (
        "HMAC"  # "HMAC" (api_secret is the secret) or "ED25519" (api_secret is the private key PEM)
    )
    stp_mode: str | None = None  # selfTradePreventionMode for every order; None: each symbol's default
    recv_window_ms: int = 5000
    poll_interval_s: float = 2.0
    http_timeout_s: float = 10.0
    paper_price_interval_s: float = 1.0
    paper_seed: int | None = None
    # live only: PROPBOT_LIVE_ALLOW_UNOFFICIAL_HOSTS=true let routing leave Binance's official hosts
    unofficial_hosts: bool = False
    account: str | None = None  # the account this engine serves; None: the single-account layout
    # PostgreSQL: the schema holding this account's chain (the writer lease is keyed on it); SQLite: None
    journal_schema: str | None = None
    engine_id: str = ""  # stored in every row this process writes (PROPBOT_ENGINE_ID or host:pid:nonce)
    # the `relay:` section: the journal outbox relay runs in this process (None: it does not)
    relay_nats_url: str | None = None
    relay_source: str | None = None
    relay_stream: str = "PROPBOT"

    @property
    def safe_mode(self) -> bool:
        return self.engine.safe_mode


def _bool(env: Mapping[str, str], key: str) -> bool | None:
    """Exactly `true` or `false`: yes/no/on/off/1/0/True are refused, not guessed at."""
    raw = env.get(key)
    if raw is None:
        return None
    if raw == "true":
        return True
    if raw == "false":
        return False
    raise ConfigError(f"{key} must be true or false")


def _no_empty(env: Mapping[str, str]) -> None:
    for key, value in env.items():
        if (key in _OURS or key.startswith(_OUR_PREFIXES)) and not value.strip():
            # an empty SAFE_MODE= would otherwise silently override the .env value
            raise ConfigError(f"environment variable {key} is set but empty; unset it or give a value")


def _merged_env(env: Mapping[str, str] | None, env_file: Path | None) -> dict[str, str]:
    base = dict(os.environ if env is None else env)
    _no_empty(base)
    path = env_file or (Path(base["PROPBOT_ENV_FILE"]) if base.get("PROPBOT_ENV_FILE") else None)
    # ./.env is read only for the real process environment: tests passing `env` stay hermetic
    if path is None and env is None and Path(".env").is_file():
        path = Path(".env")
    if path is None:
        return base
    try:
        from_file = read_env_file(path)
    except EnvFileError as exc:
        raise ConfigError(str(exc)) from None
    return {**from_file, **base}  # the process environment wins over the file


def _profile(explicit: str | None, config_file: Path | None, env: Mapping[str, str]) -> tuple[str, Path]:
    profile = explicit or (env.get("EXCHANGE_PROFILE") or "").strip() or None
    if config_file is not None:
        return profile or "", config_file
    profile = profile or "paper"
    if profile not in PROFILES:
        raise ConfigError(f"profile must be one of {', '.join(PROFILES)}")
    return profile, CONFIG_DIR / f"config.{profile}.yaml"


def _keys(
    profile: str, env: Mapping[str, str], key_type: str = "HMAC", account: str | None = None
) -> tuple[SecretStr, SecretStr]:
    """The profile's API key and its secret: the HMAC secret, or for ED25519 the private key PEM from
    BINANCE_API_SECRET_<PROFILE> or from the file BINANCE_API_PRIVATE_KEY_FILE_<PROFILE>. With an account
    the names end in _<PROFILE>_<ACCOUNT> and the profile-wide ones are never used in their place: one
    account must not trade with another's keys. Messages name variables and paths, never a value."""
    suffix = profile.upper() if account is None else f"{profile.upper()}_{account.upper()}"
    key_var, secret_var, file_var = (
        f"BINANCE_API_KEY_{suffix}",
        f"BINANCE_API_SECRET_{suffix}",
        f"BINANCE_API_PRIVATE_KEY_FILE_{suffix}",
    )
    key, secret, key_file = env.get(key_var, ""), env.get(secret_var, ""), env.get(file_var, "")
    if key_file and key_type != "ED25519":
        raise ConfigError(f"{file_var} is for binance.key_type ED25519 only (the config says {key_type})")
    if key_file and secret:
        raise ConfigError(
            f"give the {profile} profile's private key once: {secret_var} or {file_var}, not both"
        )
    if key_file:
        secret = _private_key_file(Path(key_file), file_var)
    if not key or not secret:
        where = f"{secret_var} (or {file_var})" if key_type == "ED25519" else secret_var
        whose = f"the {profile} profile" if account is None else f"account {account} ({profile})"
        raise ConfigError(f"{whose} needs {key_var} and {where} (in the environment or .env)")
    if key_type == "ED25519":
        # .env values are one line: a PEM may be written there with literal \n between its lines
        secret = secret if "\n" in secret else secret.replace("\\n", "\n")
        _check_ed25519(secret, file_var if key_file else secret_var)
    return SecretStr(key), SecretStr(secret)


_KEY_FILE_MAX = 16384


def _private_key_file(path: Path, var: str) -> str:
    """The PEM text of a private key file; refused when group or others may read or write it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigError(f"{var}: {path}: cannot read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{var}: {path} is not a regular file")
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{var}: {path} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"run: chmod 600 {path}"
            )
        data = fh.read(_KEY_FILE_MAX + 1)
    if len(data) > _KEY_FILE_MAX:
        raise ConfigError(f"{var}: {path} is too large for a private key")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"{var}: {path} is not a PEM file (not ASCII)") from None


def _check_ed25519(pem: str, var: str) -> None:
    """Fail at start, not at the first signed request; the error never quotes the key."""
    try:
        key = load_pem_private_key(pem.encode("ascii"), None)
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{var} is not an unencrypted Ed25519 private key in PEM (PKCS#8)")


def _window(start: str, end: str) -> MaintenanceWindow:
    h1, m1 = start.split(":")
    h2, m2 = end.split(":")
    return MaintenanceWindow(time(int(h1), int(m1)), time(int(h2), int(m2)))


def _official(url: str, allowed: frozenset[str], scheme: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme != scheme or parts.query or parts.fragment or parts.path not in ("", "/"):
        return False
    return f"{parts.scheme}://{parts.netloc}" in allowed


def _https_host(url: str, scheme: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == scheme and bool(parts.hostname) and "@" not in parts.netloc


def live_floor(cfg: ConfigFile, path: Path, env: Mapping[str, str]) -> bool:
    """The live profile's checks no config may weaken. Returns True when the test-rig override let the
    routing leave Binance's official hosts (it never relaxes https/wss or the approval rules).

    Raises:
        ConfigError: approvals weakened, a non-TLS URL, or an unofficial host without the override.
    """
    if cfg.profile != "live":
        return False
    if not (cfg.approvals.two_man_rule and cfg.approvals.require_token):
        raise ConfigError(
            f"{path}: the live profile needs approvals.two_man_rule and approvals.require_token true"
        )
    if cfg.routing is None:
        raise ConfigError(f"{path}: routing.base_url_rest and routing.base_url_ws are required")
    rest, ws = cfg.routing.base_url_rest, cfg.routing.base_url_ws
    if not _https_host(rest, "https") or not _https_host(ws, "wss"):
        raise ConfigError(
            f"{path}: the live profile needs https:// (REST) and wss:// (WebSocket) routing URLs"
        )
    ws_api = cfg.routing.base_url_ws_api
    if ws_api is not None and not _https_host(ws_api, "wss"):
        raise ConfigError(f"{path}: the live profile needs a wss:// routing.base_url_ws_api")
    api_ok = ws_api is None or _official(ws_api.removesuffix("/ws-api/v3"), LIVE_WS, "wss")
    if _official(rest, LIVE_REST, "https") and _official(ws, LIVE_WS, "wss") and api_ok:
        return False
    if _bool(env, ALLOW_UNOFFICIAL):
        log.warning(
            "LIVE PROFILE ON UNOFFICIAL HOSTS (%s=true): REST %s, WebSocket %s are not Binance's; "
            "real-money orders go wherever these point",
            ALLOW_UNOFFICIAL,
            rest,
            ws,
        )
        return True
    raise ConfigError(
        f"{path}: the live profile routes only to Binance's official hosts "
        f"(REST: {', '.join(sorted({u.removesuffix(':443') for u in LIVE_REST}))}; "
        f"WebSocket: {', '.join(sorted(LIVE_WS))}); a test rig sets {ALLOW_UNOFFICIAL}=true"
    )


def engine_settings(cfg: ConfigFile, safe_mode: bool) -> EngineSettings:
    r, p, a = cfg.risk, cfg.preflight, cfg.approvals
    return EngineSettings(
        profile=cfg.profile,
        safe_mode=safe_mode,
        symbols=tuple(cfg.symbols),
        risk=RiskLimits(
            r.max_order_notional,
            r.max_order_qty,
            r.price_collar_pct,
            r.max_open_orders,
            r.max_orders_per_minute,
            dict(r.max_position),
        ),
        preflight=PreflightSettings(
            p.time_skew_ms_max,
            p.ping_timeout_ms,
            tuple(p.permissions_required),
            tuple(_window(w.start, w.end) for w in p.maintenance_windows),
            p.max_age_s,
            p.account_max_age_s,
            p.refresh_s,
            p.account_refresh_s,
        ),
        approvals=ApprovalSettings(
            a.two_man_rule,
            a.require_token,
            a.ttl_s,
            dict(a.public_keys),
            {k: tuple(v) for k, v in a.retired_keys.items()},
        ),
        unknown_grace_s=cfg.orders.unknown_grace_s,
        reconcile_interval_s=cfg.orders.reconcile_interval_s,
        client_order_id_prefix=cfg.binance.client_order_id_prefix,
        hold_on_foreign_orders=cfg.binance.hold_on_foreign_orders,
    )


@dataclass(frozen=True, slots=True)
class Location:
    """Where a profile keeps its state, resolved without loading any exchange key."""

    profile: str
    config: ConfigFile
    config_path: Path
    data_dir: Path
    db_url: str
    env: dict[str, str] = field(repr=False)
    account: str | None = None
    journal_schema: str | None = None


def locate(
    profile: str | None = None,
    config_file: Path | None = None,
    *,
    data_dir: Path | None = None,
    db_url: str | None = None,
    env: Mapping[str, str] | None = None,
    env_file: Path | None = None,
    account: str | None = None,
) -> Location:
    """Profile, config, data dir, account and journal URL (for the CLI's journal and operator commands).

    Raises:
        ConfigError: as load_settings.
    """
    merged = _merged_env(env, env_file)
    wanted, path = _profile(profile, config_file, merged)
    cfg = load_config_file(path)
    if wanted and cfg.profile != wanted:
        raise ConfigError(f"{path} is for profile {cfg.profile}, not {wanted}")
    acct = _account(account, merged, cfg.account, path)
    default_dir = Path("data") / cfg.profile if acct is None else Path("data") / cfg.profile / acct
    folder = data_dir or (
        Path(merged["PROPBOT_DATA_DIR"])
        if merged.get("PROPBOT_DATA_DIR")
        else Path(cfg.data_dir)
        if cfg.data_dir
        else default_dir
    )
    url = db_url or merged.get("PROPBOT_DB_URL") or cfg.journal.url or f"sqlite:///{folder / 'journal.db'}"
    url, schema = _account_journal(url, acct)
    return Location(cfg.profile, cfg, path, folder, url, merged, acct, schema)


def _account(explicit: str | None, env: Mapping[str, str], configured: str | None, path: Path) -> str | None:
    """The account from --account, PROPBOT_ACCOUNT and the config's `account:`. Fail closed: every
    source that names one must name the same one (a wrong account trades another book)."""
    given = {
        "--account": explicit,
        "PROPBOT_ACCOUNT": env.get("PROPBOT_ACCOUNT"),
        f"{path} account": configured,
    }
    named = {source: value for source, value in given.items() if value is not None}
    for source, value in named.items():
        if not re.fullmatch(ACCOUNT_PATTERN, value):
            raise ConfigError(f"{source}: an account id is 1-30 of a-z, 0-9 and _, starting with a letter")
    if len(set(named.values())) > 1:
        listed = ", ".join(f"{source}={value}" for source, value in named.items())
        raise ConfigError(f"the account is ambiguous ({listed}): give one, or the same everywhere")
    return next(iter(named.values()), None)


def account_schema(account: str) -> str:
    return f"propbot_{account}"


def _account_journal(url: str, account: str | None) -> tuple[str, str | None]:
    """(journal URL, schema of the account's chain). PostgreSQL with an account: the URL gets the
    account's search_path; a URL that already picks a schema as well is ambiguous and refused."""
    if is_sqlite(url):
        return url, None
    chosen = search_path_of(url)
    if account is None:
        return url, chosen or "public"
    if chosen is not None:
        raise ConfigError(
            f"the journal URL selects schema {chosen} and the account is {account}: give one of them"
        )
    try:
        return with_search_path(url, account_schema(account)), account_schema(account)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def resolve_account(explicit: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The account of a command that takes a journal URL but no config file (`propbot relay`,
    `propbot mirror`): --account or PROPBOT_ACCOUNT, refused when they disagree, as serve.

    Raises:
        ConfigError: an invalid or ambiguous account."""
    return _account(explicit, _merged_env(env, None), None, Path("-"))


def account_journal_url(url: str, account: str | None) -> tuple[str, str | None]:
    """(URL, schema) of the account's chain, as serve resolves it: on PostgreSQL the URL gets search_path
    propbot_<account>; a URL that picks a schema beside an account is refused as ambiguous.

    Raises:
        ConfigError: it picks a schema beside an account."""
    return _account_journal(url, account)


def account_mirror_url(url: str, account: str | None) -> tuple[str, str | None]:
    """(URL, schema to create) of an account's copy in an auditor's mirror database: a PostgreSQL URL
    that names no schema gets propbot_<account>; one that names a schema is the auditor's explicit
    choice and is used as given (the mirror's layout is not the engine's: nothing is ambiguous about
    which account it is, that is the source). SQLite, or no account: the URL as given.

    Raises:
        ConfigError: the URL passes libpq options other than a search_path."""
    if account is None or is_sqlite(url) or search_path_of(url) is not None:
        return url, None
    try:
        return with_search_path(url, account_schema(account)), account_schema(account)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _engine_id(env: Mapping[str, str]) -> str:
    """PROPBOT_ENGINE_ID, or <host>:<pid>:<nonce>: unique to this process, kept in every row it writes."""
    configured = env.get("PROPBOT_ENGINE_ID")
    if configured is not None:
        if not re.fullmatch(ENGINE_ID_PATTERN, configured):
            raise ConfigError("PROPBOT_ENGINE_ID must be 1-64 of A-Z a-z 0-9 _ . : @ -")
        if len(configured) > MAX_LEASE_ENGINE_ID:
            # PostgreSQL keeps 63 bytes of application_name, which names the writer lease's holder to
            # standbys ("propbot:" + id): a longer id would reach them, and the takeover's audit row, cut short
            raise ConfigError(f"PROPBOT_ENGINE_ID must be at most {MAX_LEASE_ENGINE_ID} characters")
        return configured
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}:{os.getpid()}:{secrets.token_hex(3)}"


def _relay_source(cfg: ConfigFile, path: Path, url: str) -> str | None:
    """The relay section's source, or the one the journal URL names (fail closed when it names none)."""
    if cfg.relay is None:
        return None
    if cfg.relay.source is not None:
        return cfg.relay.source
    try:
        return default_source(url)
    except ValueError as exc:
        raise ConfigError(f"{path}: relay.source: {exc}") from None


def load_settings(
    profile: str | None = None,
    config_file: Path | None = None,
    *,
    data_dir: Path | None = None,
    db_url: str | None = None,
    host: str | None = None,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    env_file: Path | None = None,
    account: str | None = None,
) -> Settings:
    """Build the settings for one profile.

    `env` replaces os.environ (tests pass their own); `env_file` defaults to $PROPBOT_ENV_FILE, or ./.env
    when `env` is not given.

    Raises:
        ConfigError: with a one-line message naming the file, line or key at fault (never a secret).
    """
    loc = locate(
        profile, config_file, data_dir=data_dir, db_url=db_url, env=env, env_file=env_file, account=account
    )
    cfg, merged, path, folder, url = loc.config, loc.env, loc.config_path, loc.data_dir, loc.db_url
    unofficial = live_floor(cfg, path, merged)
    env_safe = _bool(merged, "SAFE_MODE")
    safe_mode = cfg.safe_mode if env_safe is None else env_safe
    # Paper never loads exchange keys at all, whatever the environment holds
    api_key, api_secret = (
        (None, None)
        if cfg.profile == "paper"
        else _keys(cfg.profile, merged, cfg.binance.key_type, loc.account)
    )
    ws = cfg.ws
    return Settings(
        profile=cfg.profile,
        exchange=cfg.exchange,
        config_path=path,
        engine=engine_settings(cfg, safe_mode),
        ws=WsSettings(
            ws.enabled and cfg.exchange != "paper",
            ws.stream,
            ws.symbol or cfg.symbols[0],
            ws.stall_after_s,
            ws.error_after_s,
            ws.cancel_on_disconnect,
            ws.disconnect_grace_s,
        ),
        data_dir=folder,
        db_url=url,
        host=host or cfg.server.host,
        port=cfg.server.port if port is None else port,
        rest_url=cfg.routing.base_url_rest if cfg.routing else None,
        ws_url=cfg.routing.base_url_ws if cfg.routing else None,
        ws_api_url=cfg.routing.base_url_ws_api if cfg.routing else None,
        api_key=api_key,
        api_secret=api_secret,
        key_type=cfg.binance.key_type,
        stp_mode=cfg.binance.self_trade_prevention_mode,
        recv_window_ms=cfg.binance.recv_window_ms,
        poll_interval_s=cfg.binance.poll_interval_s,
        http_timeout_s=cfg.binance.timeout_s,
        paper_price_interval_s=cfg.paper.price_interval_s,
        paper_seed=cfg.paper.seed,
        unofficial_hosts=unofficial,
        account=loc.account,
        journal_schema=loc.journal_schema,
        engine_id=_engine_id(merged),
        relay_nats_url=cfg.relay.nats_url if cfg.relay else None,
        relay_source=_relay_source(cfg, path, url),
        relay_stream=cfg.relay.stream if cfg.relay else "PROPBOT",
    )
