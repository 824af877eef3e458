"""The User Data Stream over the WebSocket API (web-socket-api.md "User Data Stream requests",
user-data-stream.md): order, balance and list events for one account, pushed instead of polled.

Since the listenKey endpoints were retired (CHANGELOG.md), the stream is a subscription on a WebSocket API
connection: `userDataStream.subscribe.signature` with apiKey, timestamp[, recvWindow] and a signature over
those params sorted by name (any key type, weight 2). Events arrive as `{"subscriptionId": n, "event":
{...}}`; `serverShutdown` has no subscriptionId (web-socket-api.md "Server Shutdown").

    CONNECTING ──subscribed──▶ OK ──socket drop / eventStreamTerminated / error──▶ ERROR ──subscribed──▶ OK
                               │ ▲
                               └─┘ rollover: at max_connection_age_s (a connection lives 24 h at most) and on
                                   serverShutdown, make-before-break: the new connection subscribes first,
                                   then the old one closes; events seen on both are delivered once.

A TRADE report whose cumulative quantity skips past the last one seen for its order also calls
`on_gap` (a lost fill report on a live connection). Every break calls `on_gap(reason)` once (events may have been missed: reconcile through REST once
`on_subscribed` fires again) and reconnects with exponential backoff plus jitter. The server's ping frames
(every 20 s) are answered by the websockets library itself (pong with the ping's payload, as the docs
require); our own keepalive pings are unsolicited, which the docs allow. The supervisor never dies silently:
a bug in it is logged, sets ERROR and restarts it with backoff. An event type or value this module does not
know is logged and handed to `on_event` raw, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from adapters.binance.schemas import order_list_id_of, venue_status
from adapters.binance.signing import Secret, Signer, make_signer, ws_api_payload
from engine.types import Balance, Fill, OrderType, Side, TimeInForce, VenueOrder, VenueStatus

log = logging.getLogger(__name__)

# web-socket-api.md "General API Information"
WS_API_URLS = MappingProxyType(
    {
        "live": "wss://ws-api.binance.com:443/ws-api/v3",
        "testnet": "wss://ws-api.testnet.binance.vision/ws-api/v3",
    }
)
# web-socket-api.md: "A single connection to the API is only valid for 24 hours"; roll over well before
DEFAULT_MAX_CONNECTION_AGE_S = 23.5 * 3600
_DEDUP_WINDOW = 10_000
_OPEN = frozenset({VenueStatus.NEW, VenueStatus.PARTIALLY_FILLED})


class StreamState(StrEnum):
    CONNECTING = "CONNECTING"
    OK = "OK"
    ERROR = "ERROR"
    STOPPED = "STOPPED"


_LEVEL = {
    StreamState.OK: "OK",
    StreamState.CONNECTING: "WARN",
    StreamState.STOPPED: "WARN",
    StreamState.ERROR: "ERROR",
}


class UserStreamError(Exception):
    """A WebSocket API request answered with an error (`status`, Binance `code` and `msg`)."""

    def __init__(self, status: int, code: int | None, msg: str) -> None:
        super().__init__(f"{status} {code}: {msg}")
        self.status, self.code, self.msg = status, code, msg


# What opening and subscribing a connection can fail with: each means "retry later", never a crash
_OPEN_ERRORS = (OSError, TimeoutError, ConnectionError, UserStreamError, websockets.WebSocketException)


# ----- parsers (an unknown value is None or raw, never an exception) -----------------------------------


def _dec(value: Any) -> Decimal:
    try:
        d = Decimal(str(value)) if value not in (None, "") else Decimal(0)
    except InvalidOperation:
        return Decimal(0)
    return d if d.is_finite() else Decimal(0)


def _enum(kind: Any, value: Any) -> Any:
    try:
        return kind(value) if value is not None else None
    except ValueError:
        return None


def _int(value: Any, default: int = -1) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def parse_execution_report(event: Mapping[str, Any]) -> VenueOrder | None:
    """An `executionReport` (user-data-stream.md "Order Update") as the engine's VenueOrder.

    The order's own client id is `C` on a cancel (then `c` is the cancel request's id), `c` otherwise. A
    TRADE carries one Fill (t, L, l, n, N); the maker flag `m`, execution type `x` and the rest stay in
    `raw` (the event itself, plus "status": the venue's status text, as in a REST order). A status the
    engine does not model arrives as UNRECOGNISED (never dropped: the engine journals it and holds).
    """
    if event.get("X") is None or not event.get("s"):
        return None
    status = venue_status(event.get("X"))
    client_id = event.get("C") or event.get("c") or ""
    fills: tuple[Fill, ...] = ()
    trade_id = _int(event.get("t"))
    if event.get("x") == "TRADE" and trade_id >= 0:
        fills = (
            Fill(
                trade_id=trade_id,
                price=_dec(event.get("L")),
                qty=_dec(event.get("l")),
                commission=_dec(event.get("n")),
                commission_asset=event.get("N") or "",
                is_maker=event.get("m") if isinstance(event.get("m"), bool) else None,
            ),
        )
    order_id = _int(event.get("i"))
    price = _dec(event.get("p"))
    return VenueOrder(
        symbol=str(event["s"]),
        client_order_id=str(client_id),
        status=status,
        order_id=order_id if order_id >= 0 else None,
        orig_qty=_dec(event.get("q")),
        executed_qty=_dec(event.get("z")),
        cumulative_quote_qty=_dec(event.get("Z")),
        fills=fills,
        raw={**event, "status": event.get("X")},
        status_text=str(event.get("X"))[:40],
        order_list_id=order_list_id_of(event.get("g")),
        # "A": the quantity prevented by self-trade prevention, present on such expiries (user-data-stream.md)
        prevented_qty=_dec(event["A"]) if event.get("A") is not None else None,
        pushed=True,
        side=_enum(Side, event.get("S")),
        type=_enum(OrderType, event.get("o")),
        price=price if price else None,
        time_in_force=_enum(TimeInForce, event.get("f")),
    )


def parse_account_position(event: Mapping[str, Any]) -> list[Balance]:
    """`outboundAccountPosition` balances (user-data-stream.md "Account Update"); bad rows are skipped."""
    out = []
    for row in event.get("B") or ():
        if isinstance(row, Mapping) and row.get("a"):
            out.append(Balance(str(row["a"]), _dec(row.get("f")), _dec(row.get("l"))))
    return out


def dedup_key(event: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two events the same one (seen on both connections during a rollover, or resent)."""
    kind = event.get("e")
    if kind == "executionReport":
        # order id, execution type, trade id (-1 for non-trades, so the transaction time tells them apart)
        return (
            kind,
            event.get("s"),
            event.get("i"),
            event.get("x"),
            event.get("X"),
            event.get("t"),
            event.get("T"),
        )
    if kind == "outboundAccountPosition":
        return (kind, event.get("u"), json.dumps(event.get("B"), sort_keys=True))
    if kind in ("balanceUpdate", "externalLockUpdate"):
        return (kind, event.get("a"), event.get("d"), event.get("T"))
    if kind == "listStatus":
        return (kind, event.get("g"), event.get("l"), event.get("L"), event.get("T"))
    return (kind, json.dumps(event, sort_keys=True, default=str))


# ----- one connection ---------------------------------------------------------------------------------

_link_ids = itertools.count(1)


@dataclass(eq=False)
class _Link:
    ws: ClientConnection
    opened_at: float
    id: int = field(default_factory=lambda: next(_link_ids))
    subscription_id: int | None = None
    subscribed_at: float | None = None
    subscribe_request: str | None = None
    pending: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    broken: asyncio.Event = field(default_factory=asyncio.Event)
    broken_at: float | None = None
    reason: str = ""
    shutdown_notice: asyncio.Event = field(default_factory=asyncio.Event)
    retired: bool = False  # we closed it on purpose (rollover, stop): its end is not a gap
    reader: asyncio.Task[None] | None = None

    def mark_broken(self, reason: str, at: float) -> None:
        if not self.broken.is_set():
            self.reason, self.broken_at = reason, at
            self.broken.set()
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(reason))
        self.pending.clear()


class UserDataStream:
    """One account's User Data Stream with rollover, dedup, gap reporting and a status() for /api/status.

    Callbacks are plain functions called on the event loop; one that raises is logged, never a break:
        on_order(VenueOrder)                       every executionReport (x, m, ... in .raw)
        on_balances(list[Balance], event)          every outboundAccountPosition
        on_list_status(event)                      every listStatus, raw
        on_event(event)                            anything else (balanceUpdate, externalLockUpdate, unknown)
        on_gap(reason)                             the stream broke: events may be missing until re-subscribed
        on_subscribed(subscription_id)             a subscription is live (first, after a gap, after a rollover)
        on_state_change(old, new, detail)
    """

    def __init__(
        self,
        url: str,
        api_key: str | Secret,
        signer: Signer,
        *,
        on_order: Callable[[VenueOrder], None] | None = None,
        on_balances: Callable[[list[Balance], dict[str, Any]], None] | None = None,
        on_list_status: Callable[[dict[str, Any]], None] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_gap: Callable[[str], None] | None = None,
        on_subscribed: Callable[[int], None] | None = None,
        on_state_change: Callable[[StreamState, StreamState, str], None] | None = None,
        timestamp_ms: Callable[[], int] | None = None,
        recv_window_ms: int | None = None,
        max_connection_age_s: float = DEFAULT_MAX_CONNECTION_AGE_S,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        jitter: float = 0.2,
        request_timeout_s: float = 10.0,
        open_timeout_s: float = 10.0,
        ping_interval_s: float | None = 20.0,
        ping_timeout_s: float | None = 20.0,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if max_connection_age_s <= 0:
            raise ValueError(f"max_connection_age_s must be positive, was {max_connection_age_s}")
        if recv_window_ms is not None and not 0 < recv_window_ms <= 60000:
            raise ValueError(f"recv_window_ms must be in 1..60000, was {recv_window_ms}")
        self.url = url
        self._api_key = Secret(api_key)
        self._signer = signer
        self.on_order, self.on_balances, self.on_list_status = on_order, on_balances, on_list_status
        self.on_event, self.on_gap, self.on_subscribed = on_event, on_gap, on_subscribed
        self._on_state_change = on_state_change
        self._timestamp_ms = timestamp_ms or (lambda: time.time_ns() // 1_000_000)
        self.recv_window_ms = recv_window_ms
        self.max_connection_age_s = max_connection_age_s
        self.backoff_initial_s, self.backoff_max_s, self.jitter = backoff_initial_s, backoff_max_s, jitter
        self.request_timeout_s, self.open_timeout_s = request_timeout_s, open_timeout_s
        self.ping_interval_s, self.ping_timeout_s = ping_interval_s, ping_timeout_s
        self._clock, self._rng = clock, rng
        self.state = StreamState.STOPPED
        self.detail = ""
        self.events = 0
        self.duplicates = 0
        self.unknown = 0
        self.gaps = 0
        self.rollovers = 0
        self.connects = 0
        self.restarts = 0
        self.last_event_at: float | None = None
        self.last_error: str | None = None
        self.last_gap: str | None = None
        self._link: _Link | None = None
        self._links: set[_Link] = set()  # every open connection (two during a rollover)
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._filled: OrderedDict[tuple[str, int | None], Decimal] = OrderedDict()  # open orders' last z
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._requests = itertools.count(1)

    @classmethod
    def for_profile(
        cls,
        profile: str,
        api_key: str | Secret,
        api_secret: str | Secret,
        *,
        key_type: str = "HMAC",
        url: str | None = None,
        **kwargs: Any,
    ) -> UserDataStream:
        """The stream for "live" or "testnet" (or any profile given its `url`, e.g. the simulator's
        ws://127.0.0.1:port/ws-api/v3), signing with an HMAC secret or an Ed25519 private key PEM.

        Raises:
            ValueError: unknown profile without a url, or a key that does not parse.
        """
        target = url or WS_API_URLS.get(profile)
        if target is None:
            raise ValueError(f"no WebSocket API URL for profile {profile!r}; pass url=")
        return cls(target, api_key, make_signer(key_type, api_secret), **kwargs)

    def __repr__(self) -> str:
        return f"UserDataStream(url={self.url!r}, api_key=***)"

    # ----- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = False
        self._set_state(StreamState.CONNECTING, "starting")
        self._spawn()

    def _spawn(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="user-data-stream")
        self._task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._stopping or task.cancelled():
            return
        # _run never returns: anything that ends it is a bug, reported and restarted
        exc = task.exception()
        reason = f"supervisor ended: {exc!r}" if exc else "supervisor ended"
        log.error("user data stream %s; restarting", reason)
        self.last_error = reason
        self.restarts += 1
        self._set_state(StreamState.ERROR, reason)
        self._spawn()

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            # A cancel can be lost when it races a timeout inside the task (asyncio.wait_for on 3.11), so
            # cancel again until the task is done; the run loop also ends by itself once _stopping is set
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=1.0)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        for link in list(self._links):
            await self._close(link)
        self._link = None
        self._set_state(StreamState.STOPPED, "stopped")

    # ----- supervisor ---------------------------------------------------------------------------------

    def backoff_delay(self, attempt: int) -> float:
        """Exponential from backoff_initial_s, plus up to `jitter` of itself, never above backoff_max_s."""
        base: float = min(self.backoff_max_s, self.backoff_initial_s * 2 ** min(attempt, 30))
        return min(self.backoff_max_s, base * (1 + self.jitter * float(self._rng())))

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                if self._link is None:
                    try:
                        self._link = await self._open()
                    except _OPEN_ERRORS as exc:
                        self._fail(f"subscribe failed: {type(exc).__name__}: {exc}")
                        await asyncio.sleep(self.backoff_delay(attempt))
                        attempt += 1
                        continue
                    attempt = 0
                    self._subscribed(self._link, "subscribed")
                    continue
                link = self._link
                why = await self._wait(link)
                if why == "broken":
                    self._link = None
                    await self._close(link)
                    self._gap(link.reason)
                    await asyncio.sleep(self.backoff_delay(attempt))
                    attempt += 1
                    continue
                attempt = await self._rollover(link, why, attempt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not end the stream silently
                log.exception("user data stream supervisor failed")
                reason = f"internal error: {type(exc).__name__}: {exc}"
                current, self._link = self._link, None
                if current is not None:  # its state is unknown now: start over, and say events may be missing
                    with contextlib.suppress(Exception):
                        await self._close(current)
                    self._gap(reason)
                else:
                    self._fail(reason)
                await asyncio.sleep(self.backoff_delay(attempt))
                attempt += 1

    async def _wait(self, link: _Link) -> str:
        """Until the link breaks ("broken"), the server announces a shutdown ("shutdown") or the link
        reaches its age ("rollover")."""
        timeout = max(0.0, link.opened_at + self.max_connection_age_s - self._clock())
        if not (link.broken.is_set() or link.shutdown_notice.is_set()) and timeout > 0:
            waiters = [
                asyncio.ensure_future(link.broken.wait()),
                asyncio.ensure_future(link.shutdown_notice.wait()),
            ]
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        if link.broken.is_set():
            return "broken"
        return "shutdown" if link.shutdown_notice.is_set() else "rollover"

    async def _rollover(self, old: _Link, why: str, attempt: int) -> int:
        """Make-before-break: subscribe on a new connection, then close the old one."""
        try:
            new = await self._open()
        except _OPEN_ERRORS as exc:
            # the old connection still delivers; try again after a pause (a break meanwhile is a gap)
            self.last_error = f"rollover ({why}) failed: {type(exc).__name__}: {exc}"
            log.warning("user data stream %s", self.last_error)
            await asyncio.sleep(self.backoff_delay(attempt))
            return attempt + 1
        self._link = new
        self.rollovers += 1
        lost = (
            old.broken_at is not None and new.subscribed_at is not None and old.broken_at < new.subscribed_at
        )
        await self._close(old)
        if lost:  # the old connection died before the new subscription was live
            self._gap(f"{old.reason} (during {why} rollover)")
        self._subscribed(new, f"rolled over ({why})")
        return 0

    def _subscribed(self, link: _Link, detail: str) -> None:
        self._set_state(StreamState.OK, detail)
        if self.on_subscribed is not None and link.subscription_id is not None:
            self._call(self.on_subscribed, link.subscription_id)

    def _gap(self, reason: str) -> None:
        self.gaps += 1
        self.last_gap = reason
        self._fail(reason)
        log.warning("user data stream gap: %s", reason)
        if self.on_gap is not None:
            self._call(self.on_gap, reason)

    def _fail(self, reason: str) -> None:
        self.last_error = reason
        self._set_state(StreamState.ERROR, reason)

    # ----- connections --------------------------------------------------------------------------------

    async def _open(self) -> _Link:
        """Connect and subscribe; the link is live (its events flow) when this returns.

        Raises:
            OSError, TimeoutError, websockets.WebSocketException: connecting failed.
            UserStreamError: the subscription was refused. ConnectionError: the socket closed meanwhile.
        """
        ws = await connect(
            self.url,
            open_timeout=self.open_timeout_s,
            close_timeout=1,
            ping_interval=self.ping_interval_s,
            ping_timeout=self.ping_timeout_s,
        )
        link = _Link(ws, self._clock())
        self._links.add(link)
        self.connects += 1
        link.reader = asyncio.get_running_loop().create_task(
            self._read(link), name=f"user-stream-read-{link.id}"
        )
        try:
            params: dict[str, Any] = {"apiKey": self._api_key.reveal(), "timestamp": self._timestamp_ms()}
            if self.recv_window_ms is not None:
                params["recvWindow"] = self.recv_window_ms
            params["signature"] = self._signer.sign(ws_api_payload(params))
            rid = f"uds-{next(self._requests)}"
            link.subscribe_request = rid
            result = await self._request(link, rid, "userDataStream.subscribe.signature", params)
            if link.subscription_id is None:  # the reader records it as soon as the answer arrives
                link.subscription_id = _int(
                    result.get("subscriptionId") if isinstance(result, dict) else None
                )
                link.subscribed_at = self._clock()
        except BaseException:
            link.retired = True
            await self._close(link)
            raise
        return link

    async def _request(self, link: _Link, rid: str, method: str, params: dict[str, Any]) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        link.pending[rid] = fut
        await link.ws.send(json.dumps({"id": rid, "method": method, "params": params}))
        async with asyncio.timeout(self.request_timeout_s):
            return await fut

    async def _close(self, link: _Link) -> None:
        link.retired = True
        self._links.discard(link)
        with contextlib.suppress(Exception):
            await link.ws.close()
        if link.reader is not None and link.reader is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(link.reader, 2.0)

    async def _read(self, link: _Link) -> None:
        reason = "closed"
        try:
            async for raw in link.ws:
                try:
                    self._on_message(link, raw)
                except Exception:  # one bad message (or a bug) is logged; the connection goes on
                    log.exception("user data stream message failed: %.200r", raw)
            code = link.ws.close_code
            reason = f"disconnected by the server (close code {code})"
        except websockets.ConnectionClosed as exc:
            reason = f"disconnected: {exc}"
        except Exception as exc:
            log.exception("user data stream reader failed")
            reason = f"reader failed: {type(exc).__name__}: {exc}"
        finally:
            link.mark_broken(reason, self._clock())

    def _on_message(self, link: _Link, raw: str | bytes) -> None:
        msg = json.loads(raw)
        if not isinstance(msg, dict):
            log.warning("user data stream: unexpected message %.200r", raw)
            return
        if "event" in msg:
            event = msg["event"]
            if not isinstance(event, dict):
                log.warning("user data stream: unexpected event %.200r", raw)
                return
            self._on_event(link, msg.get("subscriptionId"), event)
            return
        rid = msg.get("id")
        fut = link.pending.pop(rid, None) if isinstance(rid, str) else None
        if fut is None:
            log.info("user data stream: answer to no request: %.200r", raw)
            return
        if msg.get("status") == 200:
            result = msg.get("result")
            if rid == link.subscribe_request and isinstance(result, dict):
                # events may follow in the very next frame: know the subscription before they arrive
                link.subscription_id = _int(result.get("subscriptionId"))
                link.subscribed_at = self._clock()
            if not fut.done():
                fut.set_result(result)
            return
        raw_err = msg.get("error")
        err: dict[str, Any] = raw_err if isinstance(raw_err, dict) else {}
        if not fut.done():
            fut.set_exception(
                UserStreamError(_int(msg.get("status"), 0), err.get("code"), str(err.get("msg", "")))
            )

    def _on_event(self, link: _Link, sub_id: Any, event: dict[str, Any]) -> None:
        kind = event.get("e")
        if kind == "serverShutdown":  # no subscriptionId: it is about the connection
            log.info("user data stream: serverShutdown on connection %d", link.id)
            link.shutdown_notice.set()
            return
        if sub_id is not None and sub_id != link.subscription_id:
            log.info("user data stream: event for subscription %r, ours is %r", sub_id, link.subscription_id)
            return
        if kind == "eventStreamTerminated":
            link.mark_broken("eventStreamTerminated", self._clock())  # the supervisor closes and resubscribes
            return
        if link.retired:
            return
        self._deliver(event)

    def _deliver(self, event: dict[str, Any]) -> None:
        key = dedup_key(event)
        if key in self._seen:
            self.duplicates += 1
            return
        self._seen[key] = None
        if len(self._seen) > _DEDUP_WINDOW:
            self._seen.popitem(last=False)
        self.events += 1
        self.last_event_at = self._clock()
        kind = event.get("e")
        if kind == "executionReport":
            order = parse_execution_report(event)
            if order is not None:
                self._check_continuity(order)
                if self.on_order is not None:
                    self._call(self.on_order, order)
                return
            log.warning("user data stream: executionReport not understood: %.300r", event)
            self.unknown += 1
        elif kind == "outboundAccountPosition":
            if self.on_balances is not None:
                self._call(self.on_balances, parse_account_position(event), event)
            return
        elif kind == "listStatus":
            if self.on_list_status is not None:
                self._call(self.on_list_status, event)
            return
        elif kind not in ("balanceUpdate", "externalLockUpdate"):
            log.info("user data stream: unknown event %r", kind)
            self.unknown += 1
        if self.on_event is not None:
            self._call(self.on_event, event)

    def _check_continuity(self, order: VenueOrder) -> None:
        """A TRADE whose cumulative quantity before it (z - l) is above what we last saw for the order means
        a fill report never arrived (the stream has no sequence numbers; this is the one hole it shows)."""
        key = (order.symbol, order.order_id)
        last = self._filled.get(key)
        if order.fills and last is not None:
            before = order.executed_qty - sum((f.qty for f in order.fills), Decimal(0))
            if before > last:
                self._missed(
                    f"missed fill report(s) on {order.symbol} order {order.order_id}: {last} -> {before}"
                )
        if order.status in _OPEN:
            self._filled[key] = max(order.executed_qty, last if last is not None else Decimal(0))
            self._filled.move_to_end(key)
            if len(self._filled) > _DEDUP_WINDOW:
                self._filled.popitem(last=False)
        else:
            self._filled.pop(key, None)

    def _missed(self, reason: str) -> None:
        """An event is missing although the connection is fine: a gap for the consumer, not a break."""
        self.gaps += 1
        self.last_gap = reason
        log.warning("user data stream gap: %s", reason)
        if self.on_gap is not None:
            self._call(self.on_gap, reason)

    @staticmethod
    def _call(cb: Callable[..., None], *args: Any) -> None:
        try:
            cb(*args)
        except Exception:
            log.exception("user data stream callback %s failed", getattr(cb, "__name__", cb))

    # ----- state ----------------------------------------------------------------------------------------

    def _set_state(self, new: StreamState, detail: str) -> None:
        old, self.state, self.detail = self.state, new, detail
        if old is not new and self._on_state_change is not None:
            try:
                self._on_state_change(old, new, detail)
            except Exception:
                log.exception("state listener failed")

    def status(self) -> dict[str, Any]:
        now = self._clock()
        link = self._link
        live = link is not None and not link.broken.is_set()
        return {
            "level": _LEVEL[self.state],
            "state": self.state.value,
            "detail": self.detail,
            "url": self.url,
            "connected": live,
            "subscription_id": link.subscription_id if live and link is not None else None,
            "connection_age_s": round(now - link.opened_at, 3) if live and link is not None else None,
            "last_event_age_s": None if self.last_event_at is None else round(now - self.last_event_at, 3),
            "events": self.events,
            "duplicates_dropped": self.duplicates,
            "unknown_events": self.unknown,
            "gaps": self.gaps,
            "last_gap": self.last_gap,
            "rollovers": self.rollovers,
            "connects": self.connects,
            "restarts": self.restarts,
            "last_error": self.last_error,
        }
