"""Request signing for Binance Spot.

REST: the payload is the percent-encoded query string concatenated (no separator) with the body; we send
everything in the query string, so the payload is exactly the query string. It is encoded once, those
bytes are signed, and the same bytes go on the wire (rest-api.md "SIGNED Endpoint Examples").
WS API: params sorted by name, joined as k=v without any encoding (§2.4).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol
from urllib.parse import quote_plus, urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key


class Secret:
    """A string that never shows itself in repr, str, logs or tracebacks; call reveal() to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        self._value = value.reveal() if isinstance(value, Secret) else value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", hashlib.sha256(self._value.encode()).digest()))

    def __bool__(self) -> bool:
        return bool(self._value)


class Signer(Protocol):
    """Signs the exact payload bytes; the result is the text that goes into `signature=` before encoding."""

    def sign(self, payload: bytes) -> str: ...


class HmacSigner:
    """HMAC-SHA256 over the payload, lowercase hex."""

    def __init__(self, secret: str | Secret) -> None:
        self._secret = Secret(secret)

    def sign(self, payload: bytes) -> str:
        return hmac.new(self._secret.reveal().encode(), payload, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "HmacSigner(secret=***)"


class Ed25519Signer:
    """Ed25519 (RFC 8032) over the payload, base64; percent-encode it before putting it on the wire."""

    def __init__(self, private_key_pem: str | Secret, password: Secret | None = None) -> None:
        pem = Secret(private_key_pem).reveal().encode()
        key = load_pem_private_key(pem, password.reveal().encode() if password else None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"expected an Ed25519 private key, was {type(key).__name__}")
        self._key = key

    def sign(self, payload: bytes) -> str:
        return base64.b64encode(self._key.sign(payload)).decode("ascii")

    def __repr__(self) -> str:
        return "Ed25519Signer(key=***)"


def make_signer(key_type: str, secret: str | Secret) -> Signer:
    """Build the signer for an API key type ("HMAC" or "ED25519").

    Raises:
        ValueError: unknown key type or a key that does not parse.
    """
    kind = key_type.upper()
    if kind == "HMAC":
        return HmacSigner(secret)
    if kind == "ED25519":
        return Ed25519Signer(secret)
    raise ValueError(f"key_type must be HMAC or ED25519, was {key_type!r}")


def format_value(value: Any) -> str:
    """One parameter value as Binance expects it: decimals in plain notation, booleans lowercase,
    lists and dicts as compact JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")  # never "1E-7"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, float):
        raise TypeError("floats are not accepted on the wire; pass a Decimal or a string")
    return str(value)


def encode_params(params: Mapping[str, Any]) -> str:
    """Percent-encode params in insertion order, dropping None (as the official connector does)."""
    pairs = [(k, format_value(v)) for k, v in params.items() if v is not None]
    return urlencode(pairs, quote_via=quote_plus)


def signature_payload(query: str, body: str = "") -> bytes:
    """The REST payload: encoded query string and body joined with nothing between them."""
    return (query + body).encode("utf-8")


def signed_query(params: Mapping[str, Any], signer: Signer) -> str:
    """Encode params once, sign those bytes, append `&signature=` (itself percent-encoded)."""
    query = encode_params(params)
    signature = signer.sign(signature_payload(query))
    return f"{query}&signature={quote_plus(signature)}" if query else f"signature={quote_plus(signature)}"


def ws_api_payload(params: Mapping[str, Any]) -> bytes:
    """WS API payload: every param but `signature`, sorted by name, k=v joined by '&', no encoding."""
    items = sorted((k, format_value(v)) for k, v in params.items() if k != "signature" and v is not None)
    return "&".join(f"{k}={v}" for k, v in items).encode("utf-8")
