"""`propbot positions|fills`: the auditor's recomputation of GET /api/positions and /api/fills from the
journal alone, by replay (verifying the journal on the way). Read-only; prints JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from api.cli_common import CONFIG, DATA_DIR, DB, PROFILE, CliError
from api.cli_journal import _journal_location, _open_journal
from api.schemas import CLIENT_ORDER_ID, SYMBOL

if TYPE_CHECKING:
    from engine.ledger import Ledger


def _project(profile: str | None, config_file: Path | None, data_dir: Path | None, db_url: str | None,
             fills_kept: int) -> Ledger:  # fmt: skip
    from engine.errors import JournalCorrupt
    from engine.ledger import project

    store = _open_journal(_journal_location(profile, data_dir, db_url, config_file=config_file))
    try:
        ledger, _ = project(store.scan(), fills_kept=fills_kept)
    except JournalCorrupt as exc:
        raise CliError(f"journal BROKEN at seq {exc.seq}: {exc.problem}") from None
    finally:
        store.close()
    return ledger


@click.command("positions")
@PROFILE
@CONFIG
@DATA_DIR
@DB
def positions(
    profile: str | None, config_file: Path | None, data_dir: Path | None, db_url: str | None
) -> None:
    """Positions, average cost, realized P&L and fees by replay of the journal (docs/api.md), as JSON:
    the same numbers GET /api/positions serves."""
    ledger = _project(profile, config_file, data_dir, db_url, fills_kept=0)
    click.echo(json.dumps(ledger.positions(), indent=2))


@click.command("fills")
@PROFILE
@CONFIG
@DATA_DIR
@DB
@click.option("--symbol", default=None, help="only this symbol")
@click.option("--client-order-id", "client_order_id", default=None, help="only this order's fills")
def fills(
    profile: str | None, config_file: Path | None, data_dir: Path | None, db_url: str | None,
    symbol: str | None, client_order_id: str | None,
) -> None:  # fmt: skip
    """Every fill in the journal, oldest first, one JSON object a line (the rows of GET /api/fills)."""
    import re

    if symbol is not None and not re.match(SYMBOL, symbol):
        raise CliError("--symbol must be like BTCUSDT")
    if client_order_id is not None and not re.match(CLIENT_ORDER_ID, client_order_id):
        raise CliError("--client-order-id must match [.A-Z:/a-z0-9_-]{1,36}")
    ledger = _project(profile, config_file, data_dir, db_url, fills_kept=sys.maxsize)
    page = ledger.fills(symbol=symbol, client_order_id=client_order_id, limit=sys.maxsize)
    for item in page.items:
        click.echo(json.dumps(item))
