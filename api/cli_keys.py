"""`propbot keygen` and `propbot approve`: the approving operator's side of the two-man rule."""

from __future__ import annotations

import base64
import secrets
import time
from pathlib import Path

import click

from api.cli_common import CliError


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


@click.command()
@click.option(
    "--key", "key_file", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True)
)
@click.option("--approver", required=True, help="your operator id, as configured in approvals.public_keys")
@click.option(
    "--session",
    "session_id",
    required=True,
    help="session id, from GET /api/session (unique to each journal)",
)
@click.option("--action", type=click.Choice(["arm"]), default="arm")
@click.option("--ttl", type=click.IntRange(1, 86400), default=900, help="seconds the approval is valid")
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="also write the token here (0600)"
)
def approve(key_file: Path, approver: str, session_id: str, action: str, ttl: int, out: Path | None) -> None:
    """Sign a single-use two-man-rule approval token; it is printed as the last line."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from api.auth import write_private
    from engine.guardrails.approvals import sign_approval

    try:
        key = load_pem_private_key(key_file.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise CliError(f"{key_file} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CliError(f"{key_file} is not an Ed25519 key")
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
