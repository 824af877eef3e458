"""`propbot`: serve the API, manage operators, audit the journal, run the simulator, sign approvals.

Every error is one line on stderr and exit code 2; `journal verify` exits 1 when the journal is broken.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from api.cli_common import ACCOUNT, CONFIG, DATA_DIR, DB, PROFILE, CliError
from api.settings import locate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """PropBot: an order-lifecycle engine for Binance Spot, SAFE by default."""


@cli.command()
@PROFILE
@CONFIG
@DATA_DIR
@DB
@ACCOUNT
@click.option("--host", default=None, help="bind address (default 127.0.0.1)")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="default 8000")
def serve(
    profile: str | None,
    config_file: Path | None,
    data_dir: Path | None,
    db_url: str | None,
    account: str | None,
    host: str | None,
    port: int | None,
) -> int:
    """Run the API server. On PostgreSQL it is the account's writer or its standby; exit code 3 when it
    lost the writer lease (fenced), so a process supervisor starts it again (then as a standby)."""
    from api.app import create_app
    from api.auth import OperatorStore
    from api.serving import make_server
    from api.settings import load_settings

    settings = load_settings(
        profile, config_file, data_dir=data_dir, db_url=db_url, host=host, port=port, account=account
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # an unusable data dir fails here, in one line
    # A broken or group/world-writable operators.json is refused now, not on the first request
    OperatorStore(settings.data_dir / "operators.json").operators()
    if settings.unofficial_hosts:
        click.echo(
            f"WARNING: LIVE profile routed to unofficial hosts (REST {settings.rest_url}, WebSocket "
            f"{settings.ws_url}) because PROPBOT_LIVE_ALLOW_UNOFFICIAL_HOSTS=true: real money, not Binance",
            err=True,
        )
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"warning: binding {settings.host}, not loopback: the API is reachable from the network", err=True
        )
    account_text = f", account {settings.account}" if settings.account else ""
    click.echo(
        f"propbot {settings.profile}{account_text}: safe_mode={'on' if settings.safe_mode else 'OFF'}, "
        f"journal {_safe_url(settings.db_url)}, engine {settings.engine_id}, http://{settings.host}:{settings.port}"
    )
    servers: list[Any] = []

    def exit_fenced() -> None:  # uvicorn's graceful path: the lifespan stops the runtime, then run returns
        servers[0].should_exit = True

    app = create_app(settings, announce=click.echo, on_fenced=exit_fenced)
    servers.append(make_server(app, settings.host, settings.port))
    servers[0].run()
    runtime = getattr(app.state, "runtime", None)
    if runtime is not None and runtime.fenced:
        click.echo(
            "propbot: stopped: this engine lost or gave up the writer lease (fenced); exit code 3", err=True
        )
        return 3
    return 0


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
@PROFILE
@DATA_DIR
@ACCOUNT
def operators_add(
    operator_id: str, role: str, profile: str | None, data_dir: Path | None, account: str | None
) -> None:
    """Create an operator (or replace its token); the token is printed once, as the last line."""
    from api.auth import OperatorStore

    loc = locate(profile, data_dir=data_dir, account=account)
    token = OperatorStore(loc.data_dir / "operators.json").add(operator_id, role)
    click.echo(f"operator {operator_id} ({role}) saved in {loc.data_dir / 'operators.json'}; token:")
    click.echo(token)


@operators.command("list")
@PROFILE
@DATA_DIR
@ACCOUNT
def operators_list(profile: str | None, data_dir: Path | None, account: str | None) -> None:
    """List operator ids and roles (never tokens)."""
    from api.auth import OperatorStore

    loc = locate(profile, data_dir=data_dir, account=account)
    for op in OperatorStore(loc.data_dir / "operators.json").operators():
        click.echo(f"{op.id}\t{op.role}")


# -- simulator ---


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8765)
@click.option("--host", default="127.0.0.1", help="loopback only")
@click.option("--api-key", default=None, hidden=True)
@click.option("--api-secret", default=None, hidden=True)
def simulator(port: int, host: str, api_key: str | None, api_secret: str | None) -> int:
    """Run the Binance-compatible simulator on loopback. Keys come from $PROPBOT_SIM_API_KEY and
    $PROPBOT_SIM_API_SECRET (a pair is generated when neither is set)."""
    from api.bootstrap import run_simulator

    if api_key is not None or api_secret is not None:
        # a secret on the command line is visible to every user in `ps`
        raise CliError(
            "--api-key/--api-secret are not accepted (visible in ps): "
            "set PROPBOT_SIM_API_KEY and PROPBOT_SIM_API_SECRET"
        )
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise CliError(f"the simulator binds loopback addresses only, was {host}")
    return run_simulator(["--port", str(port), "--host", host])


def _register() -> None:
    # Journal, approval, view and demo commands live in their own modules to keep this one small
    from api.cli_demo import demo
    from api.cli_journal import journal
    from api.cli_keys import approve, keygen
    from api.cli_outbox import mirror, relay
    from api.cli_views import fills, positions

    for command in (journal, keygen, approve, positions, fills, demo, relay, mirror):
        cli.add_command(command)


_register()


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


if __name__ == "__main__":
    raise SystemExit(main())
