"""`propbot`: serve the API, manage operators, audit the journal, run the simulator, sign approvals.

Every error is one line on stderr and exit code 2; `journal verify` exits 1 when the journal is broken.
"""

from __future__ import annotations

import base64
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from api.settings import PROFILES, Location, locate

_PROFILE = click.option(
    "--profile", type=click.Choice(PROFILES), default=None, help="default: $EXCHANGE_PROFILE or paper"
)
_CONFIG = click.option(
    "--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), help="a config YAML file"
)
_DATA_DIR = click.option(
    "--data-dir", type=click.Path(path_type=Path, file_okay=False), help="default: data/<profile>"
)
_DB = click.option("--db", "db_url", help="journal URL; default $PROPBOT_DB_URL or <data-dir>/journal.db")


class CliError(click.ClickException):
    """A one-line failure, exit code 2."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """PropBot: an order-lifecycle engine for Binance Spot, SAFE by default."""


@cli.command()
@_PROFILE
@_CONFIG
@_DATA_DIR
@_DB
@click.option("--host", default=None, help="bind address (default 127.0.0.1)")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="default 8000")
def serve(
    profile: str | None,
    config_file: Path | None,
    data_dir: Path | None,
    db_url: str | None,
    host: str | None,
    port: int | None,
) -> None:
    """Run the API server."""
    import uvicorn

    from api.app import create_app
    from api.settings import load_settings

    settings = load_settings(profile, config_file, data_dir=data_dir, db_url=db_url, host=host, port=port)
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"warning: binding {settings.host}, not loopback: the API is reachable from the network", err=True
        )
    click.echo(
        f"propbot {settings.profile}: safe_mode={'on' if settings.safe_mode else 'OFF'}, "
        f"journal {_safe_url(settings.db_url)}, http://{settings.host}:{settings.port}"
    )
    uvicorn.run(
        create_app(settings, announce=click.echo), host=settings.host, port=settings.port, log_level="info"
    )


def _safe_url(url: str) -> str:
    """A database URL without its password."""
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, userinfo = head.partition("://")
    return f"{scheme}://{userinfo.split(':')[0]}:***@{tail}"


# -- operators -------------------------------------------------------------------------------------


@cli.group()
def operators() -> None:
    """Manage operator tokens (<data-dir>/operators.json)."""


@operators.command("add")
@click.argument("operator_id")
@click.option("--role", required=True, type=click.Choice(["viewer", "trader", "auditor", "admin"]))
@_PROFILE
@_DATA_DIR
def operators_add(operator_id: str, role: str, profile: str | None, data_dir: Path | None) -> None:
    """Create an operator (or replace its token); the token is printed once, as the last line."""
    from api.auth import OperatorStore

    loc = locate(profile, data_dir=data_dir)
    token = OperatorStore(loc.data_dir / "operators.json").add(operator_id, role)
    click.echo(f"operator {operator_id} ({role}) saved in {loc.data_dir / 'operators.json'}; token:")
    click.echo(token)


@operators.command("list")
@_PROFILE
@_DATA_DIR
def operators_list(profile: str | None, data_dir: Path | None) -> None:
    """List operator ids and roles (never tokens)."""
    from api.auth import OperatorStore

    loc = locate(profile, data_dir=data_dir)
    for op in OperatorStore(loc.data_dir / "operators.json").operators():
        click.echo(f"{op.id}\t{op.role}")


# -- journal ---------------------------------------------------------------------------------------


@cli.group()
def journal() -> None:
    """Audit the journal: verify the hash chain, show an order, export."""


def _journal_location(profile: str | None, data_dir: Path | None, db_url: str | None) -> Location:
    loc = locate(profile, data_dir=data_dir, db_url=db_url)
    if loc.db_url.startswith("sqlite:///") and not loc.db_url.startswith("sqlite:///:memory:"):
        path = Path(loc.db_url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise CliError(f"no journal at {path}")
    return loc


def _open_journal(loc: Location) -> Any:
    from engine.persistence.sql_journal import SqlJournal

    return SqlJournal(loc.db_url)


@journal.command("verify")
@_PROFILE
@_DATA_DIR
@_DB
def journal_verify(profile: str | None, data_dir: Path | None, db_url: str | None) -> int:
    """Recheck every row (chain, versions, FSM edges); exit 1 naming the first bad seq."""
    from engine.errors import JournalCorrupt
    from engine.replay import replay

    store = _open_journal(_journal_location(profile, data_dir, db_url))
    try:
        result = replay(store.scan())
    except JournalCorrupt as exc:
        click.echo(f"journal BROKEN at seq {exc.seq}: {exc.problem}")
        return 1
    finally:
        store.close()
    click.echo(f"journal OK: {result.rows} rows, last seq {result.last_seq}, last hash {result.last_hash}")
    return 0


@journal.command("show")
@click.option("--order", "client_order_id", required=True, help="client order id")
@_PROFILE
@_DATA_DIR
@_DB
def journal_show(
    client_order_id: str, profile: str | None, data_dir: Path | None, db_url: str | None
) -> None:
    """Print one order's transitions, oldest first."""
    store = _open_journal(_journal_location(profile, data_dir, db_url))
    try:
        rows = store.stream("order", client_order_id)
    finally:
        store.close()
    if not rows:
        raise CliError(f"no order {client_order_id} in the journal")
    for r in rows:
        reason = f"  ({r.reason})" if r.reason else ""
        click.echo(
            f"{r.seq:>8} {r.created_at} v{r.version:<3} {r.trigger:<24} "
            f"{r.from_state or '-':>16} -> {r.to_state or '-':<16} {r.actor}{reason}"
        )


@journal.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="default: stdout")
@_PROFILE
@_DATA_DIR
@_DB
def journal_export(
    fmt: str, out: Path | None, profile: str | None, data_dir: Path | None, db_url: str | None
) -> None:
    """Write every row in seq order as JSON lines or CSV."""
    from api.export import export_csv, export_jsonl
    from engine.journal import JournalQuery

    store = _open_journal(_journal_location(profile, data_dir, db_url))
    chunks = (export_csv if fmt == "csv" else export_jsonl)(store, JournalQuery())
    try:
        if out is None:
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        else:
            with out.open("wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
    finally:
        store.close()


# -- simulator and approvals -----------------------------------------------------------------------


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8765)
@click.option("--host", default="127.0.0.1", help="loopback only")
@click.option("--api-key", default=None)
@click.option("--api-secret", default=None)
def simulator(port: int, host: str, api_key: str | None, api_secret: str | None) -> int:
    """Run the Binance-compatible simulator on loopback (a key pair is generated when none is given)."""
    from api.bootstrap import run_simulator

    if (api_key is None) != (api_secret is None):
        raise CliError("give both --api-key and --api-secret, or neither")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise CliError(f"the simulator binds loopback addresses only, was {host}")
    argv = ["--port", str(port), "--host", host]
    if api_key is not None and api_secret is not None:
        argv += ["--api-key", api_key, "--api-secret", api_secret]
    return run_simulator(argv)


@cli.command()
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


@cli.command()
@click.option(
    "--key", "key_file", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True)
)
@click.option("--approver", required=True, help="your operator id, as configured in approvals.public_keys")
@click.option("--session", "session_id", required=True, help="session id (the profile: testnet or live)")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: returns the exit code; errors are one line, never a traceback."""
    from api.auth import OperatorError
    from api.config_file import ConfigError
    from engine.errors import EngineError

    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="propbot", standalone_mode=False
        )
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("propbot: aborted", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"propbot: error: {_one_line(exc.format_message())}", err=True)
        return 2
    except (ConfigError, OperatorError, EngineError, OSError, ValueError) as exc:
        click.echo(f"propbot: error: {_one_line(str(exc))}", err=True)
        return 2
    except Exception as exc:  # the last line of defence: still one line, no traceback
        click.echo(f"propbot: error: {type(exc).__name__}: {_one_line(str(exc))}", err=True)
        return 2
    return result if isinstance(result, int) else 0


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
