"""The composition root: the only api module that picks implementations (journal, venue, feed).

paper   → PaperExchange (in-process matching engine) with its price driver; no keys, no network.
testnet → BinanceExchange on BinanceSpotClient with the profile's routing URLs and env keys,
live      plus an optional MarketDataFeed whose cancel_on_disconnect cancels our open orders on its
          symbol through the engine (journaled like any cancel, with an audit row).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from adapters.binance.exchange import BinanceExchange
from adapters.binance.rest import BinanceSpotClient
from adapters.binance.user_stream import UserDataStream
from adapters.binance.ws import FeedState, MarketDataFeed
from adapters.nats.relay import OutboxRelay, RelayConfig
from adapters.paper.exchange import PaperExchange
from adapters.venue import MatchingEngine
from api.auth import OperatorStore
from api.runtime import Hook, Runtime
from api.settings import Settings
from engine.audit import AuditSlot
from engine.checkpoint import engine_log
from engine.errors import EngineError
from engine.outbox import default_source
from engine.persistence.database import is_sqlite
from engine.persistence.lease import WriterLease
from engine.persistence.migrate import ensure_schema, upgrade
from engine.persistence.sql_journal import SqlJournal
from engine.ports import ExchangePort
from engine.runtime import Engine

log = logging.getLogger(__name__)


def prepare_journal(url: str, schema: str | None = None) -> None:
    """Create the account's schema if it is new (PostgreSQL), then bring the journal to the newest
    alembic revision (a no-op when it is current). Run by the writer only, after it holds the lease."""
    if schema is not None and schema != "public":
        ensure_schema(url, schema)
    upgrade(url)


def build_exchange(settings: Settings) -> ExchangePort:
    if settings.exchange == "paper":
        seed = settings.paper_seed if settings.paper_seed is not None else 0
        return PaperExchange(MatchingEngine(seed=seed))
    if not (settings.rest_url and settings.ws_url and settings.api_key and settings.api_secret):
        raise ValueError(f"the {settings.profile} profile needs routing URLs and API keys")
    client = BinanceSpotClient(
        settings.profile,
        settings.api_key.get_secret_value(),
        settings.api_secret.get_secret_value(),
        {"rest": settings.rest_url, "ws": settings.ws_url},
        recv_window_ms=settings.recv_window_ms,
        timeout_s=settings.http_timeout_s,
        key_type=settings.key_type,
        self_trade_prevention_mode=settings.stp_mode,
    )
    return BinanceExchange(
        client,
        poll_interval_s=settings.poll_interval_s,
        stp_mode=settings.stp_mode,
        symbols=settings.engine.symbols,
    )


def _cancel_open_on(engine: Engine, symbol: str) -> Hook:
    async def cancel_open() -> None:
        # Our own orders only: a foreign order on the account (no engine prefix) is never cancelled
        for order in engine.orders.cancellable(symbol):
            audit = AuditSlot(
                "system", "cancel_on_disconnect", {"symbol": symbol, "clientOrderId": order.client_order_id}
            )
            try:
                await engine.orders.cancel(symbol, order.client_order_id, None, "system", audit=audit)
            except EngineError as exc:
                log.warning("cancel_on_disconnect %s failed: %s (%s)", order.client_order_id, exc, exc.reason)

    return cancel_open


def _feed(settings: Settings, engine: Engine) -> MarketDataFeed:
    ws = settings.ws
    assert settings.ws_url

    def on_message(msg: dict[str, Any]) -> None:
        # bookTicker carries b/a, aggTrade carries p: both keep the risk collar's last price fresh
        try:
            if "b" in msg and "a" in msg:
                price = (Decimal(msg["b"]) + Decimal(msg["a"])) / 2
            elif "p" in msg:
                price = Decimal(msg["p"])
            else:
                return
        except (ArithmeticError, TypeError, ValueError):
            return
        if price > 0:
            engine.orders.last_prices[ws.symbol] = price

    def on_state(old: FeedState, new: FeedState, detail: str) -> None:
        log.info("market data %s: %s -> %s (%s)", ws.symbol, old.value, new.value, detail)

    return MarketDataFeed(
        settings.ws_url,
        ws.symbol,
        ws.stream,
        stall_after_s=ws.stall_after_s,
        error_after_s=ws.error_after_s,
        disconnect_grace_s=ws.disconnect_grace_s,
        on_state_change=on_state,
        on_message=on_message,
        cancel_on_disconnect=_cancel_open_on(engine, ws.symbol) if ws.cancel_on_disconnect else None,
    )


def _user_stream(settings: Settings, exchange: BinanceExchange) -> UserDataStream:
    """The user data stream over the WebSocket API, feeding the exchange's order updates."""
    assert settings.api_key is not None
    assert settings.api_secret is not None
    stream = UserDataStream.for_profile(
        settings.profile, settings.api_key.get_secret_value(), settings.api_secret.get_secret_value(),
        key_type=settings.key_type, url=settings.ws_api_url, timestamp_ms=exchange.client.clock.timestamp_ms,
    )  # fmt: skip
    exchange.attach_user_stream(stream)
    return stream


def run_simulator(argv: list[str]) -> int:
    """`propbot simulator`: the Binance-compatible simulator in the foreground."""
    from adapters.simulator.server import main

    return main(argv)


def _relay(settings: Settings) -> OutboxRelay:
    """The outbox relay for this process's journal (the `relay:` config section): it only reads the
    journal and writes its cursor row; its status and metrics join /api/status and /metrics."""
    assert settings.relay_nats_url is not None
    source = settings.relay_source or default_source(settings.db_url)  # set by load_settings
    # SQLite's commit watch runs on the engine's event loop here: checked every 10 ms (50 ms idle), not
    # the separate relay's 2 ms: about a third of the watch's CPU, for up to 10 ms more lag
    return OutboxRelay(RelayConfig(settings.db_url, settings.relay_nats_url, source, settings.relay_stream,
                                   commit_check_s=0.01, idle_commit_check_s=0.05))  # fmt: skip


def build_runtime(settings: Settings) -> Runtime:
    """Wire everything; nothing connects until Runtime.start()."""
    # PostgreSQL: one writer per account, by the lease on the account's schema; SQLite: one engine per file
    lease = None
    if not is_sqlite(settings.db_url):
        lease = WriterLease(settings.db_url, settings.journal_schema or "public", settings.engine_id)
    journal = SqlJournal(settings.db_url, engine_id=settings.engine_id, lease=lease)
    exchange = build_exchange(settings)
    # The signed journal heads live beside the data, outside the database they protect (docs/SECURITY.md)
    engine = Engine(journal, exchange, settings.engine, checkpoints=engine_log(settings.data_dir))
    status_sources: dict[str, Any] = {}
    hold_checks: list[Any] = []
    start_hooks: list[Hook] = []
    stop_hooks: list[Hook] = []
    if isinstance(exchange, PaperExchange) and settings.paper_price_interval_s > 0:
        interval = settings.paper_price_interval_s

        async def drive() -> None:
            exchange.start_price_driver(interval)

        start_hooks.append(drive)
    if isinstance(exchange, BinanceExchange) and settings.ws_api_url:
        stream = _user_stream(settings, exchange)
        status_sources["user_stream"] = stream.status
        start_hooks.append(stream.start)
        stop_hooks.append(stream.stop)
    if isinstance(exchange, BinanceExchange):
        governor = exchange.client.governor
        status_sources["rate_limit"] = governor.status
        status_sources["clock"] = exchange.client.clock.status
        hold_checks.append(lambda: "rate_limit: IP banned (418)" if governor.hold_required else None)
    if settings.relay_nats_url:
        relay = _relay(settings)

        async def start_relay() -> None:
            relay.start()

        status_sources["outbox_relay"] = relay.status
        start_hooks.append(start_relay)
        stop_hooks.append(relay.stop)
    if settings.ws.enabled:
        feed = _feed(settings, engine)
        status_sources["market_data"] = feed.status
        start_hooks.append(feed.start)
        stop_hooks.append(feed.stop)
    return Runtime(
        settings,
        engine,
        journal,
        OperatorStore(settings.data_dir / "operators.json"),
        prepare_journal=lambda: prepare_journal(settings.db_url, settings.journal_schema),
        status_sources=status_sources,
        hold_checks=hold_checks,
        start_hooks=start_hooks,
        stop_hooks=stop_hooks,
        lease=lease,
    )
