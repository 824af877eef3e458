"""`propbot journal verify|show|export|backup|accept-loss`: audit the journal from the command line.

verify compares the journal with the engine's signed checkpoint log (<data-dir>/checkpoints.jsonl by
default) as start-up does; accept-loss is the one command that writes (a signed line to that log, never
to the journal); backup writes a new file only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from api.cli_common import ACCOUNT, CONFIG, DATA_DIR, DB, PROFILE, CliError
from api.settings import Location, locate
from engine.guardrails.approvals import journal_keys

CHECKPOINTS = click.option(
    "--checkpoints",
    "checkpoints",
    type=click.Path(path_type=Path, dir_okay=False),
    help="the signed checkpoint log; default checkpoints.jsonl next to a SQLite journal (else in the "
    "data dir) when it exists",
)
CHECKPOINT_KEY = click.option(
    "--checkpoint-key",
    "checkpoint_key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="the engine's checkpoint key; default checkpoint_key.pub (.pem to sign) next to the log",
)


@click.group()
def journal() -> None:
    """Audit the journal: verify the hash chain and the checkpoints, show an order, export, back up."""


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    return None


def _journal_location(
    profile: str | None,
    data_dir: Path | None,
    db_url: str | None,
    *,
    must_exist: bool = True,
    config_file: Path | None = None,
    account: str | None = None,
) -> Location:
    loc = locate(profile, config_file, data_dir=data_dir, db_url=db_url, account=account)
    path = _sqlite_path(loc.db_url)
    if must_exist and path is not None and not path.is_file():
        raise CliError(f"no journal at {path}")
    return loc


def _open_journal(loc: Location) -> Any:
    from engine.persistence.sql_journal import SqlJournal

    return SqlJournal(loc.db_url)


def _checkpoint_log(loc: Location, checkpoints: Path | None, key: Path | None, *, sign: bool) -> Any:
    """The checkpoint log to compare with (None: there is none), opened with the public key, or with
    the private key when `sign`."""
    from engine.checkpoint import (
        KEY_FILE,
        LOG_FILE,
        PUBLIC_KEY_FILE,
        CheckpointLog,
        load_private_key,
        load_public_key,
    )

    db_file = _sqlite_path(loc.db_url)
    path = checkpoints or (db_file.parent if db_file is not None else loc.data_dir) / LOG_FILE
    if not path.is_file():
        if checkpoints is not None:
            raise CliError(f"no checkpoint log at {path}")
        return None
    name = KEY_FILE if sign else PUBLIC_KEY_FILE
    candidates = [key] if key is not None else [path.parent / name, loc.data_dir / name]
    found = next((c for c in candidates if c is not None and c.is_file()), None)
    if found is None:
        raise CliError(f"no checkpoint key for {path} (looked for {', '.join(str(c) for c in candidates)})")
    try:
        if sign:
            return CheckpointLog(path, private_key=load_private_key(found))
        return CheckpointLog(path, public_key=load_public_key(found))
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _approval_rules(loc: Location) -> dict[str, Any]:
    rules = loc.config.approvals
    keys = journal_keys(rules.public_keys, rules.retired_keys)
    return {"approver_keys": keys, "require_token": rules.require_token,
            "two_man_rule": rules.two_man_rule}  # fmt: skip


def _broken(seq: int, problem: str) -> int:
    click.echo(f"journal BROKEN at seq {seq}: {problem}")
    return 1


@journal.command("verify")
@PROFILE
@CONFIG
@DATA_DIR
@DB
@ACCOUNT
@CHECKPOINTS
@CHECKPOINT_KEY
@click.option(
    "--check-approvals",
    is_flag=True,
    help="re-verify every arm/go_live approval with the config's approvals.public_keys "
    "(and require one when approvals.require_token is on)",
)
@click.option(
    "--against-mirror",
    "mirror_url",
    default=None,
    help="also compare every row's hash with the auditors' mirror database (propbot mirror); exit 1 "
    'printing "DIFFERS at seq N" for the first seq where they differ; with an account, a PostgreSQL '
    "mirror URL that names no schema means schema propbot_<account> (as propbot mirror --account)",
)
@click.option(
    "--mirror-may-lag",
    is_flag=True,
    help="with --against-mirror: primary rows past the mirror's last row are not a difference",
)
def journal_verify(
    profile: str | None,
    config_file: Path | None,
    data_dir: Path | None,
    db_url: str | None,
    account: str | None,
    checkpoints: Path | None,
    checkpoint_key: Path | None,
    check_approvals: bool,
    mirror_url: str | None,
    mirror_may_lag: bool,
) -> int:
    """Recheck every row (chain, time order, versions, FSM edges) and the signed checkpoints; exit 1
    printing "BROKEN at seq N: problem" for the first damage found, 0 with "OK" otherwise. With
    --against-mirror, then compare with the mirror: "DIFFERS at seq N" (exit 1) or "mirror OK"."""
    from engine.errors import JournalCorrupt
    from engine.replay import replay

    loc = _journal_location(
        profile, data_dir, db_url, must_exist=False, config_file=config_file, account=account
    )
    cplog = _checkpoint_log(loc, checkpoints, checkpoint_key, sign=False)
    path = _sqlite_path(loc.db_url)
    if path is not None and not path.is_file():
        latest = cplog.latest() if cplog is not None else None
        if latest is None:
            raise CliError(f"no journal at {path}")
        return _broken(1, f"no journal file at {path}; checkpoint at seq {latest.seq} ({latest.at})")
    rules = _approval_rules(loc) if check_approvals else {}
    store = _open_journal(loc)
    try:
        result = replay(store.scan(), **rules)
        if cplog is not None:
            cplog.check(result, store.hash_at)
    except JournalCorrupt as exc:
        return _broken(exc.seq, exc.problem)
    finally:
        store.close()
    chain = f" (account {loc.account}, schema {loc.journal_schema})" if loc.account else ""
    click.echo(
        f"journal OK{chain}: {result.rows} rows, last seq {result.last_seq}, last hash {result.last_hash}"
    )
    if cplog is None:
        click.echo("checkpoints: none (no checkpoint log): a truncated tail or a rewrite is not detectable")
    else:
        latest = cplog.latest()
        reached = f"seq {latest.seq} of {latest.at} ({latest.kind}) reached" if latest else "log is empty"
        click.echo(f"checkpoints OK: {reached}, log {cplog.path}")
    if mirror_url is not None:
        return _compare_with_mirror(loc, mirror_url, mirror_may_lag)
    return 0


def _compare_with_mirror(loc: Location, mirror_url: str, mirror_may_lag: bool) -> int:
    from api.config_file import ConfigError
    from api.settings import account_mirror_url
    from engine.mirror_compare import compare_with_mirror
    from engine.persistence.sql_journal import SqlJournal

    try:  # with an account, a mirror URL naming no schema means propbot_<account>, as `propbot mirror`
        mirror_url = account_mirror_url(mirror_url, loc.account)[0]
    except ConfigError as exc:
        raise CliError(f"--against-mirror: {exc}") from None

    path = _sqlite_path(mirror_url)
    if path is not None and not path.is_file():
        raise CliError(f"no mirror at {path}")
    primary, mirror = _open_journal(loc), SqlJournal(mirror_url)
    try:
        # Checked first: a mirror database without the mirror's table would otherwise read as the
        # *primary* journal broken at seq 0
        problem = mirror.schema_problem()
        if problem is not None:
            raise CliError(f"--against-mirror: the mirror database is not usable: {problem}")
        result = compare_with_mirror(primary.scan(), mirror.scan(), mirror_may_lag=mirror_may_lag)
    finally:
        primary.close()
        mirror.close()
    if result.difference is not None:
        click.echo(f"mirror DIFFERS at seq {result.difference.seq}: {result.difference.problem}")
        return 1
    behind = result.primary_last - result.mirror_last
    lag = f"; mirror behind by {behind} rows" if behind > 0 else ""
    click.echo(f"mirror OK: {result.compared} rows equal, last seq {result.mirror_last}{lag}")
    return 0


@journal.command("accept-loss")
@PROFILE
@DATA_DIR
@DB
@CHECKPOINTS
@click.option(
    "--key", "checkpoint_key", type=click.Path(path_type=Path, dir_okay=False),
    help="the engine's checkpoint private key; default checkpoint_key.pem next to the log",
)  # fmt: skip
@click.option("--reason", required=True, help="why the loss is accepted (journaled in the signed line)")
def journal_accept_loss(
    profile: str | None,
    data_dir: Path | None,
    db_url: str | None,
    checkpoints: Path | None,
    checkpoint_key: Path | None,
    reason: str,
) -> int:
    """Accept the journal as it is now against the checkpoints it falls short of (a restored backup,
    a lost -wal file): append a signed accepted_loss line (seq now, old seq) so start-up proceeds.
    The journal must still verify on its own; exit 1 when it does not."""
    from engine.errors import JournalCorrupt
    from engine.replay import replay

    if not reason.strip():
        raise CliError("--reason must say why")
    loc = _journal_location(profile, data_dir, db_url)
    cplog = _checkpoint_log(loc, checkpoints, checkpoint_key, sign=True)
    if cplog is None:
        raise CliError(f"no checkpoint log at {loc.data_dir}; give --checkpoints")
    store = _open_journal(loc)
    try:
        result = replay(store.scan())
        problem = cplog.compare(result, store.hash_at)
    except JournalCorrupt as exc:
        return _broken(exc.seq, exc.problem)
    finally:
        store.close()
    if problem is None:
        click.echo(f"journal reaches the checkpoints (last seq {result.last_seq}): nothing to accept")
        return 0
    latest = cplog.latest()
    cp = cplog.append(
        result.last_seq, result.last_hash, kind="accepted_loss",
        old_seq=latest.seq if latest else None, old_hash=latest.hash if latest else None, reason=reason,
    )  # fmt: skip
    click.echo(f"was: {problem.problem}")
    click.echo(
        f"accepted: journal at seq {cp.seq} (hash {cp.hash}) replaces checkpoint seq "
        f"{cp.old_seq}; signed line appended to {cplog.path}"
    )
    return 0


@journal.command("backup")
@PROFILE
@DATA_DIR
@DB
@CHECKPOINTS
@CHECKPOINT_KEY
@click.option("--to", "target", required=True, type=click.Path(path_type=Path, dir_okay=False))
def journal_backup(
    profile: str | None,
    data_dir: Path | None,
    db_url: str | None,
    checkpoints: Path | None,
    checkpoint_key: Path | None,
    target: Path,
) -> int:
    """A consistent copy of a SQLite journal (SQLite's online backup: the -wal content included, safe
    while the engine writes), then verified (chain, and checkpoints when there is a log); prints rows
    and head. Never overwrites. PostgreSQL: use pg_dump (exit 2)."""
    import os
    import sqlite3

    from engine.errors import JournalCorrupt
    from engine.persistence.database import sqlite_url
    from engine.persistence.sql_journal import SqlJournal
    from engine.replay import replay

    loc = _journal_location(profile, data_dir, db_url)
    source = _sqlite_path(loc.db_url)
    if source is None:
        raise CliError(
            "journal backup copies SQLite journals only; for PostgreSQL use pg_dump (not implemented)"
        )
    if target.exists():
        raise CliError(f"{target} exists; refusing to overwrite")
    cplog = _checkpoint_log(loc, checkpoints, checkpoint_key, sign=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # owner-only from the start
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    copy = SqlJournal(sqlite_url(target))
    try:
        result = replay(copy.scan())
        if cplog is not None:
            cplog.check(result, copy.hash_at)
    except JournalCorrupt as exc:
        click.echo(f"backup written to {target}, but it does not verify:")
        return _broken(exc.seq, exc.problem)
    finally:
        copy.close()
    click.echo(f"backup OK: {target}: {result.rows} rows, head seq {result.last_seq} hash {result.last_hash}")
    return 0


@journal.command("show")
@click.option("--order", "client_order_id", required=True, help="client order id")
@PROFILE
@DATA_DIR
@DB
@ACCOUNT
def journal_show(
    client_order_id: str, profile: str | None, data_dir: Path | None, db_url: str | None, account: str | None
) -> None:
    """Print one order's transitions, oldest first."""
    store = _open_journal(_journal_location(profile, data_dir, db_url, account=account))
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
@ACCOUNT
def journal_export(
    fmt: str, out: Path | None, profile: str | None, data_dir: Path | None, db_url: str | None,
    account: str | None,
) -> None:  # fmt: skip
    """Write every row in seq order as JSON lines or CSV."""
    from api.export import export_csv, export_jsonl
    from engine.journal import JournalQuery

    store = _open_journal(_journal_location(profile, data_dir, db_url, account=account))
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
