"""`propbot journal verify|show|export`: audit the journal from the command line (read-only)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from api.cli_common import DATA_DIR, DB, PROFILE, CliError
from api.settings import Location, locate


@click.group()
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
@PROFILE
@DATA_DIR
@DB
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
@PROFILE
@DATA_DIR
@DB
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
@PROFILE
@DATA_DIR
@DB
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
