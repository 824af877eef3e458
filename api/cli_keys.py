"""`propbot keygen` and `propbot approve`: the approving operator's side of the two-man rule."""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from api.cli_common import CliError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@click.command()
@click.option(
    "--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="private key file (PEM)"
)
def keygen(out: Path) -> None:
    """Create an Ed25519 key pair for approvals; prints the public key (for approvals.public_keys) last."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from api.auth import write_private

    if out.exists():
        raise CliError(f"{out} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(out, pem.decode("ascii"))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    click.echo(f"private key written to {out} (mode 0600); public key for approvals.public_keys:")
    click.echo(base64.b64encode(raw).decode())


def load_key(key_file: Path) -> Ed25519PrivateKey:
    """The approver's own Ed25519 private key (PEM, unencrypted).

    Raises:
        CliError: naming the file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(key_file.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise CliError(f"{key_file} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CliError(f"{key_file} is not an Ed25519 key")
    return key


_LAST_EPOCH_S = 253402300799  # 9999-12-31T23:59:59Z


def read_request(text: str, source: str) -> dict[str, Any]:
    """An approval request as GET /api/approvals/{id} answers it ({"approval": {...}}) or the bare object.

    Raises:
        CliError: naming `source` (and the line for JSON errors) and what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{source}: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if isinstance(data, dict) and isinstance(data.get("approval"), dict):
        data = data["approval"]
    if not isinstance(data, dict):
        raise CliError(f"{source}: not an approval request (a JSON object)")
    for name in ("id", "action", "session_id", "requester", "nonce", "status"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise CliError(f"{source}: the request has no {name}")
    expires = data.get("expires_at")
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise CliError(f"{source}: the request has no integer expires_at")
    if data["status"] != "PENDING":
        raise CliError(f"{source}: request {data['id']} is {data['status']}, not PENDING: nothing to approve")
    if not 0 < expires <= _LAST_EPOCH_S:  # shown as a date before signing: it must be one
        raise CliError(f"{source}: expires_at {expires} is not a time (Unix seconds) before year 10000")
    return data


def sign_request(
    key: Ed25519PrivateKey, approver: str, request: dict[str, Any], ttl_s: int, now_s: float
) -> str:
    """A token for one approval request: its session, action and nonce, valid for `ttl_s` seconds but
    never past the request's own expiry.

    Raises:
        CliError: the request has expired already."""
    from engine.guardrails.approvals import sign_approval

    expires_at = min(int(now_s) + ttl_s, int(request["expires_at"]))
    if expires_at <= now_s:
        raise CliError(f"request {request['id']} has expired")
    claims = {"approver": approver, "session_id": request["session_id"], "action": request["action"],
              "nonce": request["nonce"], "expires_at": expires_at}  # fmt: skip
    return sign_approval(key, claims)


def describe_request(request: dict[str, Any], approver: str) -> str:
    """What is being approved, shown before the token (the approver reads it, not the raw JSON)."""
    until = datetime.fromtimestamp(request["expires_at"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"approving request {request['id']} as {approver}: {request['action']} session "
        f"{request['session_id']}, requested by {request['requester']}"
        f" at {request.get('created_at', '?')}, request expires {until}"
    )


@click.command()
@click.option(
    "--key", "key_file", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True)
)
@click.option("--approver", required=True, help="your operator id, as configured in approvals.public_keys")
@click.option(
    "--request",
    "request_file",
    type=click.File("r"),
    help="the request as GET /api/approvals/{id} answers it: a file, or - for stdin",
)
@click.option(
    "--session",
    "session_id",
    help="without --request: session id, from GET /api/session (unique to each journal)",
)
@click.option("--action", type=click.Choice(["arm"]), default="arm")
@click.option("--ttl", type=click.IntRange(1, 86400), default=900, help="seconds the approval is valid")
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="also write the token here (0600)"
)
def approve(
    key_file: Path, approver: str, request_file: TextIO | None, session_id: str | None, action: str,
    ttl: int, out: Path | None,
) -> None:  # fmt: skip
    """Sign a single-use two-man-rule approval token; it is printed as the last line.

    With --request, the token is bound to that approval request (its session, action and nonce) and is
    submitted with POST /api/approvals/{id}; without it, to --session and a fresh nonce (for
    POST /api/session/arm {"token": ...} or the token file)."""
    from api.auth import write_private
    from engine.guardrails.approvals import sign_approval

    if (request_file is None) == (session_id is None):
        raise CliError("give --request FILE (or -) or --session ID, not both and not neither")
    key = load_key(key_file)
    if request_file is not None:
        request = read_request(request_file.read(), request_file.name)
        click.echo(describe_request(request, approver))
        token = sign_request(key, approver, request, ttl, time.time())
    else:
        claims = {
            "approver": approver,
            "session_id": session_id,
            "action": action,
            "nonce": secrets.token_hex(16),
            "expires_at": int(time.time()) + ttl,
        }
        token = sign_approval(key, claims)
    if out is not None:
        write_private(out, token + "\n")
        click.echo(f"token written to {out}")
    click.echo(token)
