"""The WebSocket API at /ws-api/v3 with the User Data Stream (web-socket-api.md, user-data-stream.md).

Requests are JSON text frames `{"id", "method", "params"}`; answers are `{"id", "status", "result"|"error",
"rateLimits"}` with HTTP-like status codes (web-socket-api.md "Response format", "Status codes"). Methods:

    ping, time                              weight 1
    session.logon / session.status / session.logout      weight 2 (logon: Ed25519 keys only)
    userDataStream.subscribe                weight 2, needs a session.logon
    userDataStream.subscribe.signature      weight 2, params apiKey, timestamp, signature[, recvWindow]
    userDataStream.unsubscribe              weight 2, optional subscriptionId (none = all); each closed
                                            subscription gets an `eventStreamTerminated` event
    session.subscriptions                   weight 2

Signatures are computed over every param but `signature`, sorted by name, joined as `k=v` with `&` and no
percent-encoding (web-socket-api.md "SIGNED request example (HMAC)" / "(Ed25519)"): HMAC-SHA256 hex
(case-insensitive) with the simulator's API secrets, or base64 Ed25519 for keys registered with
`register_ed25519`. Weight is charged to the same per-IP limiter as REST.

Every order change in the matching engine becomes an `executionReport` (user-data-stream.md "Order
Update") for every subscription, wrapped as `{"subscriptionId": n, "event": {...}}`, each followed by an
`outboundAccountPosition` with the assets whose balance that execution changed (none when it moved no
funds), read at the moment of the change. An order list (the admin OTO) reports `listStatus` when it
starts executing and when every leg is done; an admin deposit or withdrawal (POST /_sim/balance) reports
`balanceUpdate`, then its `outboundAccountPosition`. The server pings through
uvicorn's ws_ping_interval (20 s on Binance); a connection lives `max_lifetime_s` (24 h) at most.

Faults, POST /_sim/ws_api/faults (JSON, any subset; DELETE clears them); they act on the event stream:
    delay_ms: int        every event waits this long before it is sent (order kept)
    duplicate: int       the next N events are sent twice
    skip: int            the next N events are never sent (a silent gap, as a lost message would be)
    reorder: int         the next N events are each held back and sent right after the event following them
    refuse: int          the next N connection attempts are refused (HTTP 403 before the upgrade): with
                         `drop`, an outage that lasts until the test says so
    drop: true           close every WS API connection now (code 1011)
    terminate: true      send `eventStreamTerminated` on every subscription and end them (sockets stay open)
    shutdown: float      send `serverShutdown` on every connection now and close them S seconds later
GET /_sim/ws_api answers the connections, their subscriptions and the fault state. DELETE /_sim/faults
clears these faults too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import itertools
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from adapters.simulator.auth import bad_key, check_timestamp, mandatory, sign
from adapters.simulator.faults import FaultSpecError
from adapters.simulator.weights import RateLimited
from adapters.venue.errors import VenueError
from adapters.venue.symbols import fmt

if TYPE_CHECKING:
    from adapters.simulator.state import SimulatorState

log = logging.getLogger(__name__)

PATH = "/ws-api/v3"
MAX_SUBSCRIPTION_IDS = 65_535  # web-socket-api.md "User Data Stream subscription": per session lifetime
MAX_ACTIVE_SUBSCRIPTIONS = 1_000
_SIGNED_PARAMS = frozenset({"apiKey", "timestamp", "signature", "recvWindow"})
_WEIGHTS = {
    "ping": 1,
    "time": 1,
    "session.logon": 2,
    "session.status": 2,
    "session.logout": 2,
    "session.subscriptions": 2,
    "userDataStream.subscribe": 2,
    "userDataStream.subscribe.signature": 2,
    "userDataStream.unsubscribe": 2,
}
_ids = itertools.count(1)
_ZERO = Decimal(0)


def _dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"), default=str)


def _param_text(value: Any) -> str:
    """A JSON param as it appears in the signature payload (web-socket-api.md: no encoding)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def signature_payload(params: dict[str, Any]) -> bytes:
    """Every param but `signature`, sorted by name, `k=v` joined by `&` (web-socket-api.md)."""
    items = sorted((k, _param_text(v)) for k, v in params.items() if k != "signature")
    return "&".join(f"{k}={v}" for k, v in items).encode("utf-8")


def _bad_signature() -> VenueError:
    return VenueError(-1022, "Signature for this request is not valid.")


@dataclass
class StreamFaults:
    """The user data stream's fault state; counters are consumed one event at a time."""

    delay_ms: int = 0
    duplicate: int = 0
    skip: int = 0
    reorder: int = 0
    refuse: int = 0

    def update(self, spec: dict[str, Any]) -> list[str]:
        """Apply a /_sim/ws_api/faults body; returns the actions it asked for ("drop", "terminate",
        "shutdown:S").

        Raises:
            FaultSpecError: unknown key or bad value; nothing is changed then.
        """
        staged = StreamFaults(**asdict(self))
        actions: list[str] = []
        for key, value in spec.items():
            if key in ("delay_ms", "duplicate", "skip", "reorder", "refuse"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise FaultSpecError(f"{key} must be an integer >= 0, was {value!r}")
                setattr(staged, key, value)
            elif key in ("drop", "terminate"):
                if not isinstance(value, bool):
                    raise FaultSpecError(f"{key} must be true or false, was {value!r}")
                if value:
                    actions.append(key)
            elif key == "shutdown":
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise FaultSpecError(f"shutdown must be the seconds until the close, was {value!r}")
                actions.append(f"shutdown:{float(value)}")
            else:
                raise FaultSpecError(f"unknown fault {key!r}")
        for name, val in asdict(staged).items():
            setattr(self, name, val)
        return actions


@dataclass(eq=False)
class _Conn:
    ws: WebSocket
    ip: str
    connected_since: int
    id: int = field(default_factory=lambda: next(_ids))
    # (monotonic time not to send before, text); None is the sender's stop signal
    queue: asyncio.Queue[tuple[float, str] | None] = field(default_factory=asyncio.Queue)
    subs: dict[int, str] = field(default_factory=dict)  # subscriptionId -> "signature" | "logon"
    next_sub_id: int = 0
    logon_key: str | None = None
    authorized_since: int | None = None

    def send(self, body: Any, delay_s: float = 0.0) -> None:
        self.queue.put_nowait((time.monotonic() + delay_s, _dumps(body)))


class WsApiHub:
    """Connections of /ws-api/v3, their subscriptions, and the engine listener that feeds them."""

    def __init__(self, state: SimulatorState, *, max_lifetime_s: float | None = None) -> None:
        self.state = state
        self._max_lifetime_s = max_lifetime_s
        self.conns: set[_Conn] = set()
        self.faults = StreamFaults()
        self.ed25519_keys: dict[str, Ed25519PublicKey] = {}
        self.events_published = 0
        self._held: dict[str, Any] | None = None  # the reorder fault's held-back event
        self._exec_ids = itertools.count(1)
        self._sent_balances: dict[str, tuple[str, str]] = {}  # asset -> (free, locked) last reported
        self._balances_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        state.engine.add_listener(self._on_engine_event)

    @property
    def max_lifetime_s(self) -> float:
        if self._max_lifetime_s is not None:
            return self._max_lifetime_s
        return self.state.hub.max_lifetime_s if self.state.hub is not None else 86_400.0

    def register_ed25519(self, api_key: str, public_key_pem: str) -> None:
        """Accept `api_key` as an Ed25519 key (session.logon, signature subscriptions).

        Raises:
            ValueError: the PEM is not an Ed25519 public key.
        """
        key = load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"expected an Ed25519 public key, was {type(key).__name__}")
        self.ed25519_keys[api_key] = key

    # ----- engine events -> executionReport / outboundAccountPosition -------------------------------

    def _on_engine_event(self, kind: str, payload: dict[str, Any]) -> None:
        """Runs under the matching engine's lock, right after the change: the balances read here are
        the ones this very change left (user-data-stream.md: an outboundAccountPosition "any time an
        account balance has changed", with the assets that event possibly changed)."""
        if kind not in ("order", "list", "balance") or self._loop is None:
            return  # nobody ever connected: nothing to tell
        events: list[dict[str, Any]] = []
        if kind == "order":
            rules = self.state.engine.rules.get(payload["symbol"])
            events.append(self._execution_report(payload))
            assets = [rules.base_asset, rules.quote_asset] if rules is not None else []
        elif kind == "list":
            events.append(self._list_status(payload))
            assets = []
        else:
            events.append({"e": "balanceUpdate", "E": self.state.now_ms(), "a": payload["asset"],
                           "d": payload["delta"], "T": payload["time"]})  # fmt: skip
            assets = [payload["asset"]]
        position = self._position(assets)
        if position is not None:
            events.append(position)
        if threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._publish_all, events)
        else:
            self._publish_all(events)

    def _publish_all(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self._publish(event)

    def _position(self, assets: list[str]) -> dict[str, Any] | None:
        """outboundAccountPosition for those of `assets` whose balance differs from the last one sent,
        or None when none changed (an execution that moved no funds)."""
        if not assets:
            return None
        with self._balances_lock:
            account = self.state.engine.account()
            balances = {b["asset"]: b for b in account["balances"]}
            changed = []
            for a in sorted(set(assets)):
                row = balances.get(a)
                if row is None:
                    continue
                now = (row["free"], row["locked"])
                if self._sent_balances.get(a) != now:
                    self._sent_balances[a] = now
                    changed.append({"a": a, "f": row["free"], "l": row["locked"]})
        if not changed:
            return None
        return {"e": "outboundAccountPosition", "E": self.state.now_ms(), "u": account["updateTime"],
                "B": changed}  # fmt: skip

    def _list_status(self, lst: dict[str, Any]) -> dict[str, Any]:
        """user-data-stream.md "Order Update" (listStatus): every documented field."""
        return {
            "e": "listStatus",
            "E": self.state.now_ms(),
            "s": lst["symbol"],
            "g": lst["orderListId"],
            "c": lst["contingencyType"],
            "l": lst["listStatusType"],
            "L": lst["listOrderStatus"],
            "r": "NONE",
            "C": lst["listClientOrderId"],
            "T": lst["transactionTime"],
            "O": [{"s": o["symbol"], "i": o["orderId"], "c": o["clientOrderId"]} for o in lst["orders"]],
        }

    def _execution_report(self, o: dict[str, Any]) -> dict[str, Any]:
        """user-data-stream.md "Order Update": every documented field, conditional ones when they apply."""
        trade = o.get("lastTrade")
        execution = o["executionType"]
        cancel_id = o.get("cancelClientOrderId")
        open_now = o["status"] in ("NEW", "PARTIALLY_FILLED")
        on_book = open_now and o["type"] != "MARKET" and o["timeInForce"] == "GTC"
        zero = fmt(_ZERO)
        event: dict[str, Any] = {
            "e": "executionReport",
            "E": self.state.now_ms(),
            "s": o["symbol"],
            # on a cancel, c is the cancel request's id and C the cancelled order's
            "c": cancel_id if cancel_id else o["clientOrderId"],
            "S": o["side"],
            "o": o["type"],
            "f": o["timeInForce"],
            "q": o["origQty"],
            "p": o["price"],
            "P": o["stopPrice"],
            "F": o.get("icebergQty", zero),
            "g": o.get("orderListId", -1),
            "C": o["clientOrderId"] if cancel_id else "",
            "x": execution,
            "X": o["status"],
            "r": "NONE",
            "i": o["orderId"],
            "l": trade["qty"] if trade else zero,
            "z": o["executedQty"],
            "L": trade["price"] if trade else zero,
            "n": trade["commission"] if trade else "0",
            "N": trade["commissionAsset"] if trade else None,
            "T": trade["time"] if trade else o["updateTime"],
            "t": trade["id"] if trade else -1,
            "I": next(self._exec_ids),
            "w": on_book,
            "m": bool(trade["isMaker"]) if trade else False,
            "M": False,
            "O": o["time"],
            "Z": o["cummulativeQuoteQty"],
            "Y": trade["quoteQty"] if trade else zero,
            "Q": o["origQuoteOrderQty"],
        }
        if o.get("workingTime", -1) >= 0:
            event["W"] = o["workingTime"]
        event["V"] = o["selfTradePreventionMode"]
        if o["status"] == "EXPIRED" and o.get("expiryReason"):
            event["eR"] = o["expiryReason"]
        return event

    # ----- fan-out with the stream faults -----------------------------------------------------------

    def _publish(self, event: dict[str, Any]) -> None:
        f = self.faults
        if f.skip > 0:
            f.skip -= 1
            return
        if f.reorder > 0 and self._held is None:
            self._held = event
            return
        batch = [event]
        if self._held is not None:
            batch.append(self._held)
            self._held = None
            f.reorder -= 1
        for item in batch:
            copies = 1
            if f.duplicate > 0:
                f.duplicate -= 1
                copies = 2
            for _ in range(copies):
                self._fan_out(item)

    def _fan_out(self, event: dict[str, Any]) -> None:
        self.events_published += 1
        delay_s = self.faults.delay_ms / 1000
        for conn in list(self.conns):
            for sub_id in list(conn.subs):
                conn.send({"subscriptionId": sub_id, "event": event}, delay_s)

    # ----- connections ------------------------------------------------------------------------------

    async def endpoint(self, ws: WebSocket) -> None:
        if self._loop is None:
            held = self.state.engine.account()["balances"]  # outside our lock: the engine's comes first
            with self._balances_lock:  # what the account holds now: later events report changes to it
                for b in held:
                    self._sent_balances.setdefault(b["asset"], (b["free"], b["locked"]))
            self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        if self.faults.refuse > 0:
            self.faults.refuse -= 1
            await ws.close(code=1013)  # before accept: the handshake is answered 403
            return
        await ws.accept()
        conn = _Conn(ws, ws.client.host if ws.client else "unknown", self.state.now_ms())
        self.conns.add(conn)
        loop = asyncio.get_running_loop()
        sender = loop.create_task(self._send_loop(conn))
        # web-socket-api.md: "A single connection to the API is only valid for 24 hours"
        expiry = loop.call_later(self.max_lifetime_s, lambda: loop.create_task(self._close(conn, 1000)))
        try:
            while True:
                text = await ws.receive_text()
                reply = self._request(conn, text)
                conn.queue.put_nowait((0.0, _dumps(reply)))
                for sub_id in reply.pop("_terminated", ()):
                    conn.send(self._terminated_event(sub_id))
        except (WebSocketDisconnect, RuntimeError, KeyError):
            pass  # KeyError: a binary frame (receive_text finds no "text")
        finally:
            expiry.cancel()
            self.conns.discard(conn)
            conn.queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(sender, 1.0)

    async def _send_loop(self, conn: _Conn) -> None:
        try:
            while True:
                item = await conn.queue.get()
                if item is None:
                    return
                not_before, text = item
                wait = not_before - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await conn.ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass

    @staticmethod
    async def _close(conn: _Conn, code: int) -> None:
        with contextlib.suppress(Exception):
            await conn.ws.close(code=code)

    def _terminated_event(self, sub_id: int) -> dict[str, Any]:
        return {"subscriptionId": sub_id, "event": {"e": "eventStreamTerminated", "E": self.state.now_ms()}}

    # ----- requests ---------------------------------------------------------------------------------

    def _request(self, conn: _Conn, text: str) -> dict[str, Any]:
        try:
            msg = json.loads(text)
        except ValueError:
            return self._error(None, VenueError(-1135, "Invalid JSON Request"))
        if not isinstance(msg, dict) or not isinstance(msg.get("method"), str):
            req_id = msg.get("id") if isinstance(msg, dict) else None
            return self._error(req_id, mandatory("method"))
        req_id, method = msg.get("id"), msg["method"].removeprefix("v3/")
        params = msg.get("params", {})
        if not isinstance(params, dict):
            return self._error(req_id, VenueError(-1102, "Field value was empty or malformed."))
        weight = _WEIGHTS.get(method)
        if weight is None:
            return self._error(req_id, VenueError(-1020, "This operation is not supported."))
        now = self.state.now_ms()
        try:
            self.state.limiter.admit(conn.ip, now, weight)
            terminated: list[int] = []
            result = self._dispatch(conn, method, params, now, terminated)
        except RateLimited as exc:
            return self._error(req_id, exc, conn)
        except VenueError as exc:
            return self._error(req_id, exc, conn)
        except Exception:  # a simulator bug still answers like Binance would
            log.exception("ws-api handler failed: %s", method)
            return self._error(
                req_id, VenueError(-1000, "An unknown error occurred while processing the request.")
            )
        reply = {"id": req_id, "status": 200, "result": result, "rateLimits": self._rate_limits(conn)}
        if terminated:
            reply["_terminated"] = terminated
        return reply

    def _rate_limits(self, conn: _Conn) -> list[dict[str, Any]]:
        used = self.state.limiter.used_weight(conn.ip, self.state.now_ms())
        return [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": self.state.limiter.weight_limit,
                "count": used,
            }
        ]

    def _error(self, req_id: Any, exc: VenueError, conn: _Conn | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": req_id, "status": exc.http_status, "error": exc.to_json()}
        if isinstance(exc, RateLimited):
            out["error"]["data"] = {"retryAfter": self.state.now_ms() + exc.retry_after_s * 1000}
        if conn is not None:
            out["rateLimits"] = self._rate_limits(conn)
        return out

    def _dispatch(
        self, conn: _Conn, method: str, params: dict[str, Any], now: int, terminated: list[int]
    ) -> Any:
        if method == "ping":
            return {}
        if method == "time":
            return {"serverTime": now}
        if method == "session.logon":
            key = self._verify_signed(params, now, ed25519_only=True)
            conn.logon_key, conn.authorized_since = key, now
            return self._session(conn, now)
        if method == "session.status":
            return self._session(conn, now)
        if method == "session.logout":
            conn.logon_key = conn.authorized_since = None
            for sub_id, kind in list(conn.subs.items()):
                if kind == "logon":  # signature subscriptions survive a logout (web-socket-api.md)
                    del conn.subs[sub_id]
                    terminated.append(sub_id)
            return self._session(conn, now)
        if method == "session.subscriptions":
            return [{"subscriptionId": s} for s in conn.subs]
        if method == "userDataStream.subscribe":
            if conn.logon_key is None:
                raise bad_key()
            return {"subscriptionId": self._subscribe(conn, "logon")}
        if method == "userDataStream.subscribe.signature":
            self._verify_signed(params, now, ed25519_only=False)
            return {"subscriptionId": self._subscribe(conn, "signature")}
        if method == "userDataStream.unsubscribe":
            return self._unsubscribe(conn, params, terminated)
        raise VenueError(-1020, "This operation is not supported.")  # pragma: no cover - _WEIGHTS guards

    def _session(self, conn: _Conn, now: int) -> dict[str, Any]:
        return {
            "apiKey": conn.logon_key,
            "authorizedSince": conn.authorized_since,
            "connectedSince": conn.connected_since,
            "returnRateLimits": True,
            "serverTime": now,
            "userDataStream": bool(conn.subs),
        }

    def _subscribe(self, conn: _Conn, kind: str) -> int:
        # one account in the simulator: a second subscription on the same connection is the same account
        if conn.subs:
            raise VenueError(-2035, "User Data Stream subscription already active.")
        if conn.next_sub_id >= MAX_SUBSCRIPTION_IDS:
            raise VenueError(-2042, "Maximum subscription ID reached for this connection.")
        sub_id, conn.next_sub_id = conn.next_sub_id, conn.next_sub_id + 1
        conn.subs[sub_id] = kind
        return sub_id

    @staticmethod
    def _unsubscribe(conn: _Conn, params: dict[str, Any], terminated: list[int]) -> dict[str, Any]:
        extra = set(params) - {"subscriptionId"}
        if extra:
            raise VenueError(
                -1104,
                f"Not all sent parameters were read; read '1' parameter(s) but was sent '{len(params)}'.",
            )
        if "subscriptionId" in params:
            sub_id = params["subscriptionId"]
            if isinstance(sub_id, bool) or not isinstance(sub_id, int):
                raise mandatory("subscriptionId")
            if sub_id not in conn.subs:
                raise VenueError(-2036, "User Data Stream subscription not active.")
            targets = [sub_id]
        else:
            targets = list(conn.subs)
        for sub_id in targets:
            del conn.subs[sub_id]
            terminated.append(sub_id)
        return {}

    def _verify_signed(self, params: dict[str, Any], now: int, *, ed25519_only: bool) -> str:
        """Key, timestamp window, then signature (the REST order: auth.authenticate); returns the key.

        Raises:
            VenueError: -1104 for unknown params, -1102, -2015, -1021, -1022.
        """
        unread = set(params) - _SIGNED_PARAMS
        if unread:
            raise VenueError(
                -1104,
                f"Not all sent parameters were read; read '{len(params) - len(unread)}' parameter(s) "
                f"but was sent '{len(params)}'.",
            )
        for name in ("apiKey", "timestamp", "signature"):
            if params.get(name) in (None, ""):
                raise mandatory(name)
        api_key, signature = params["apiKey"], params["signature"]
        if not isinstance(api_key, str) or not isinstance(signature, str):
            raise mandatory("apiKey" if not isinstance(api_key, str) else "signature")
        ed_key = self.ed25519_keys.get(api_key)
        secret = None if ed25519_only else self.state.keys.get(api_key)
        if ed_key is None and secret is None:
            raise bad_key()
        text_params = {k: _param_text(v) for k, v in params.items()}
        check_timestamp(text_params, now)
        payload = signature_payload(params)
        if ed_key is not None:
            try:
                ed_key.verify(base64.b64decode(signature, validate=True), payload)
            except (InvalidSignature, binascii.Error, ValueError):
                raise _bad_signature() from None
        else:
            assert secret is not None
            # HMAC signatures are case-insensitive hex (web-socket-api.md "Signature Case Sensitivity")
            if not hmac.compare_digest(signature.lower(), sign(payload, secret)):
                raise _bad_signature()
        return api_key

    # ----- fault actions ------------------------------------------------------------------------------

    async def drop_all(self) -> int:
        conns = list(self.conns)
        for conn in conns:
            await self._close(conn, 1011)
        return len(conns)

    def terminate_all(self) -> int:
        ended = 0
        for conn in list(self.conns):
            for sub_id in list(conn.subs):
                del conn.subs[sub_id]
                conn.send(self._terminated_event(sub_id))
                ended += 1
        return ended

    def announce_shutdown(self, close_after_s: float) -> int:
        """web-socket-api.md "Server Shutdown": the event (no subscriptionId), then the close."""
        conns = list(self.conns)
        event = {"event": {"e": "serverShutdown", "E": self.state.now_ms()}}
        loop = asyncio.get_running_loop()
        for conn in conns:
            conn.send(event)
            loop.call_later(close_after_s, self._close_soon, conn)
        return len(conns)

    def _close_soon(self, conn: _Conn) -> None:
        asyncio.get_running_loop().create_task(self._close(conn, 1001))

    async def shutdown(self) -> None:
        """A server stop: serverShutdown to everyone, then close."""
        for conn in list(self.conns):
            event = _dumps({"event": {"e": "serverShutdown", "E": self.state.now_ms()}})
            with contextlib.suppress(Exception):
                await conn.ws.send_text(event)
        await self.drop_all()

    def snapshot(self) -> dict[str, Any]:
        return {
            "faults": asdict(self.faults),
            "events_published": self.events_published,
            "connections": [
                {
                    "id": c.id,
                    "client": f"{c.ws.client.host}:{c.ws.client.port}" if c.ws.client else None,
                    "connectedSince": c.connected_since,
                    "subscriptions": sorted(c.subs),
                    "logon": c.logon_key is not None,
                    "queued": c.queue.qsize(),
                }
                for c in list(self.conns)
            ],
        }

    # ----- admin routes -------------------------------------------------------------------------------

    async def _set_faults(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise FaultSpecError("body must be a JSON object")
            actions = self.faults.update(body)
        except (ValueError, FaultSpecError) as exc:
            return _json({"error": str(exc)}, 400)
        done: dict[str, int] = {}
        for action in actions:
            if action == "drop":
                done["dropped"] = await self.drop_all()
            elif action == "terminate":
                done["terminated"] = self.terminate_all()
            elif action.startswith("shutdown:"):
                done["shutdown"] = self.announce_shutdown(float(action.removeprefix("shutdown:")))
        return _json({"faults": asdict(self.faults), **done})

    def clear_faults(self) -> None:
        """Back to no stream faults; an event held back by `reorder` is sent now."""
        self.faults = StreamFaults()
        held, self._held = self._held, None
        if held is not None:
            self._fan_out(held)

    async def _clear_faults(self, request: Request) -> Response:
        self.clear_faults()
        return _json({"faults": asdict(self.faults)})

    async def _state(self, request: Request) -> Response:
        return _json(self.snapshot())

    def routes(self) -> list[BaseRoute]:
        return [
            WebSocketRoute(PATH, self.endpoint),
            Route("/_sim/ws_api/faults", self._set_faults, methods=["POST"]),
            Route("/_sim/ws_api/faults", self._clear_faults, methods=["DELETE"]),
            Route("/_sim/ws_api", self._state, methods=["GET"]),
        ]


def _json(body: Any, status: int = 200) -> Response:
    return Response(_dumps(body), status_code=status, media_type="application/json")
