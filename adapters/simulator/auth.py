"""Binance's request rules: parameter parsing, HMAC signatures and the timestamp/recvWindow window.

Everything here is pure (bytes and integers in, dicts or VenueError out) so it can be tested without a server.
The checks follow binance_facts.md §2: the signature is HMAC-SHA256 hex over the raw query string joined
with nothing to the raw body, each exactly as received minus its `signature` parameter.
"""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from adapters.venue.errors import VenueError

DEFAULT_RECV_WINDOW_MS = Decimal(5000)
MAX_RECV_WINDOW_MS = Decimal(60000)
# timestamps with 16 digits are microseconds (Binance accepts both units)
_MICROS_THRESHOLD = 10**15

AUTH_PARAMS = frozenset({"signature", "timestamp", "recvWindow"})


def bad_key() -> VenueError:
    return VenueError(-2015, "Invalid API-key, IP, or permissions for action.", http_status=401)


def mandatory(name: str) -> VenueError:
    return VenueError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def parse_params(query: bytes, body: bytes) -> dict[str, str]:
    """Merge query-string and form-body parameters; the query string wins on a clash.

    Raises:
        VenueError: -1101 when one source repeats a parameter, -1100 when bytes are not UTF-8.
    """
    merged: dict[str, str] = {}
    for source in (body, query):  # query last so it overrides the body
        seen: set[str] = set()
        try:
            pairs = parse_qsl(source.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise VenueError(-1100, "Illegal characters found in a parameter.") from None
        for key, value in pairs:
            if key in seen:
                raise VenueError(-1101, "Duplicate values for a parameter detected.")
            seen.add(key)
            merged[key] = value
    return merged


def split_signature(raw: bytes) -> tuple[bytes, bytes | None]:
    """Return `raw` without its `signature=...` pair, and the signature value if it was there."""
    if not raw:
        return raw, None
    kept: list[bytes] = []
    signature: bytes | None = None
    for part in raw.split(b"&"):
        if part.startswith(b"signature="):
            signature = part[len(b"signature=") :]
        else:
            kept.append(part)
    return b"&".join(kept), signature


def sign(payload: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def verify_signature(query: bytes, body: bytes, secret: str) -> None:
    """Check the HMAC over the bytes as received.

    Raises:
        VenueError: -1102 without a signature, -1022 when it does not match.
    """
    q, q_sig = split_signature(query)
    b, b_sig = split_signature(body)
    given = q_sig if q_sig is not None else b_sig
    if not given:
        raise mandatory("signature")
    expected = sign(q + b, secret)
    # the signature is case-insensitive hex; compare in constant time
    if not hmac.compare_digest(given.decode("ascii", "replace").lower(), expected):
        raise VenueError(-1022, "Signature for this request is not valid.")


def _decimal_param(params: dict[str, str], name: str) -> Decimal | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise mandatory(name) from None
    if not value.is_finite():
        raise mandatory(name)
    return value


def check_timestamp(params: dict[str, str], server_ms: int) -> None:
    """Apply Binance's timing rule: timestamp < serverTime + 1000 and serverTime - timestamp <= recvWindow.

    Raises:
        VenueError: -1102 for a missing/malformed timestamp or a recvWindow above 60000, -1021 outside the window.
    """
    raw_ts = params.get("timestamp")
    if not raw_ts or not raw_ts.isdigit():
        raise mandatory("timestamp")
    ts = Decimal(int(raw_ts))
    if ts >= _MICROS_THRESHOLD:
        ts = ts / 1000
    recv_window = _decimal_param(params, "recvWindow")
    if recv_window is None:
        recv_window = DEFAULT_RECV_WINDOW_MS
    if recv_window <= 0 or recv_window.as_tuple().exponent < -3:  # type: ignore[operator]
        raise mandatory("recvWindow")
    if recv_window > MAX_RECV_WINDOW_MS:
        raise VenueError(-1102, "'recvWindow' contains unexpected value. Cannot be greater than 60000.")
    if ts >= server_ms + 1000:
        raise VenueError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if server_ms - ts > recv_window:
        raise VenueError(-1021, "Timestamp for this request is outside of the recvWindow.")


def authenticate(
    query: bytes,
    body: bytes,
    params: dict[str, str],
    api_key: str | None,
    keys: dict[str, str],
    server_ms: int,
) -> None:
    """Run the SIGNED-endpoint checks in Binance's order: key, timestamp window, signature.

    Raises:
        VenueError: -2015, -1102, -1021 or -1022.
    """
    secret = keys.get(api_key or "")
    if secret is None:
        raise bad_key()
    check_timestamp(params, server_ms)
    verify_signature(query, body, secret)
