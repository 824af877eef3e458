"""Binance's request rules: parameter parsing, HMAC and Ed25519 signatures and the timestamp/recvWindow window.

Everything here is pure (bytes and integers in, dicts or VenueError out) so it can be tested without a server.
The checks follow rest-api.md "SIGNED (TRADE and USER_DATA) Endpoint security":
the signature payload is the raw query string joined with nothing to the raw body, each exactly as received
minus its `signature` parameter. An HMAC key's signature is HMAC-SHA256 hex (case-insensitive); an Ed25519
key's is the base64 Ed25519 signature of the payload (case-sensitive), percent-encoded on the wire
(rest-api.md "Ed25519 Keys").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, unquote_plus

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

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


def load_ed25519_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM ("-----BEGIN PUBLIC KEY-----", what Binance asks you to register),
    or base64 of the raw 32 bytes or of the DER SubjectPublicKeyInfo.

    Raises:
        ValueError: not an Ed25519 public key in one of those forms.
    """
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = load_pem_public_key(text.encode())
    else:
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise ValueError("an Ed25519 public key must be PEM or base64") from None
        key = Ed25519PublicKey.from_public_bytes(raw) if len(raw) == 32 else load_der_public_key(raw)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 public key: {type(key).__name__}")
    return key


def verify_ed25519_signature(query: bytes, body: bytes, public_key: Ed25519PublicKey) -> None:
    """Check a base64 Ed25519 signature (percent-encoded in the request) over the bytes as received.

    Raises:
        VenueError: -1102 without a signature, -1022 when it is not base64 or does not verify.
    """
    q, q_sig = split_signature(query)
    b, b_sig = split_signature(body)
    given = q_sig if q_sig is not None else b_sig
    if not given:
        raise mandatory("signature")
    try:
        signature = base64.b64decode(unquote_plus(given.decode("ascii")), validate=True)
        public_key.verify(signature, q + b)
    except (UnicodeDecodeError, binascii.Error, InvalidSignature):
        raise VenueError(-1022, "Signature for this request is not valid.") from None


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
    ed25519_keys: dict[str, Ed25519PublicKey] | None = None,
) -> None:
    """Run the SIGNED-endpoint checks in Binance's order: key, timestamp window, signature.

    `keys` holds HMAC secrets, `ed25519_keys` Ed25519 public keys, each by API key; a key is one type only.

    Raises:
        VenueError: -2015, -1102, -1021 or -1022.
    """
    public_key = (ed25519_keys or {}).get(api_key or "")
    secret = keys.get(api_key or "")
    if public_key is None and secret is None:
        raise bad_key()
    check_timestamp(params, server_ms)
    if public_key is not None:
        verify_ed25519_signature(query, body, public_key)
    else:
        assert secret is not None
        verify_signature(query, body, secret)
