"""`propbot relay` and `propbot mirror`: the journal outbox to NATS JetStream, and the auditors' copy.

Both are separate processes (docs/scale-out.md): each one's status is a log line every --log-every
seconds and, with --status-port, GET /status and /metrics on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import click

from api.cli_common import CliError

NATS = click.option("--nats", "nats_url", default="nats://127.0.0.1:4222", show_default=True, help="NATS URL")
SOURCE = click.option(
    "--source",
    default=None,
    help="the journal source's name in subjects and message ids, one per journal; default: the URL's "
    "PostgreSQL schema (search_path), required when the URL names none",
)
STREAM = click.option("--stream", default="PROPBOT", show_default=True, help="the JetStream stream")
ACCOUNT = click.option(
    "--account",
    default=None,
    help="the account whose chain this is, as `propbot serve --account`: the source defaults to propbot_<ID>, "
    "and a PostgreSQL URL naming no schema gets search_path propbot_<ID> (the relay refuses one that names "
    "another, as serve; the mirror uses it as given); default $PROPBOT_ACCOUNT",
)


def _account(url: str, account: str | None, *, mirror: bool) -> tuple[str, str | None, str | None]:
    """(URL, the PostgreSQL schema to create first or None, the account's default source name): the
    relay's journal URL as serve resolves it (a URL picking a schema beside an account is refused), or
    the mirror database's (a URL picking a schema is used as given: api.settings.account_mirror_url)."""
    from api.config_file import ConfigError
    from api.settings import account_journal_url, account_mirror_url, account_schema, resolve_account

    try:
        acct = resolve_account(account)
        if mirror:
            url, schema = account_mirror_url(url, acct)
        else:
            url, schema = account_journal_url(url, acct)[0], None
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    return url, schema, account_schema(acct) if acct else None


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@click.command()
@click.option("--db", "db_url", required=True, help="the journal database URL")
@NATS
@SOURCE
@STREAM
@ACCOUNT
@click.option("--batch", type=click.IntRange(1, 4000), default=512, show_default=True)
@click.option("--status-port", type=click.IntRange(0, 65535), default=None, help="serve /status and /metrics")
@click.option("--log-every", type=click.FloatRange(0.1), default=10.0, show_default=True, help="seconds")
def relay(
    db_url: str, nats_url: str, source: str | None, stream: str, account: str | None, batch: int,
    status_port: int | None, log_every: float,
) -> int:  # fmt: skip
    """Publish every journal row, in seq order after a durable cursor, to JetStream (at least once)."""
    from adapters.nats.relay import OutboxRelay, RelayConfig
    from engine.outbox import default_source

    db_url, _, account_source = _account(db_url, account, mirror=False)
    try:
        name = source or account_source or default_source(db_url)
        config = RelayConfig(db_url, nats_url, name, stream, batch=batch)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    _logging()
    asyncio.run(_run_relay(OutboxRelay(config), status_port, log_every))
    return 0


async def _run_relay(relay: object, status_port: int | None, log_every: float) -> None:
    from adapters.nats.relay import OutboxRelay
    from adapters.nats.relay_status import serve_status

    assert isinstance(relay, OutboxRelay)
    log = logging.getLogger("propbot.relay")
    relay.start()
    runner = await serve_status(relay, status_port) if status_port is not None else None

    async def report() -> None:
        while True:
            await asyncio.sleep(log_every)
            st = relay.status()
            log.log(
                logging.ERROR if st["status"] == "ERROR" else logging.INFO,
                "relay %s %s %s: cursor %d, journal %d, lag %d rows %.3fs, connected %s, listening %s",
                st["source"], st["status"], st["role"], st["cursor"], st["journal_last_seq"], st["lag_rows"],
                st["lag_seconds"], st["connected"], st["listening"],
            )  # fmt: skip

    reporter = asyncio.create_task(report())
    stopper = asyncio.create_task(_until_signal())
    refused = asyncio.create_task(relay.refusal.wait())  # its source names another journal's chain
    try:
        await asyncio.wait({stopper, refused}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reporter, stopper, refused):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if runner is not None:
            await runner.cleanup()
        await relay.stop()
    if relay.refused is not None:
        raise CliError(relay.refused)


@click.command()
@NATS
@click.option("--db", "db_url", required=True, help="the mirror's database URL (migrated here)")
@click.option(
    "--source", default=None, help="the journal source to mirror; default propbot_<account>, else `default`"
)
@STREAM
@ACCOUNT
@click.option("--durable", default=None, help="the JetStream durable consumer; default mirror-<source>")
@click.option(
    "--until-caught-up", is_flag=True, help="exit 0 once nothing is pending (else run until killed)"
)
@click.option("--status-port", type=click.IntRange(0, 65535), default=None, help="serve /status and /metrics")
@click.option("--log-every", type=click.FloatRange(0.1), default=10.0, show_default=True, help="seconds")
def mirror(
    nats_url: str, db_url: str, source: str | None, stream: str, account: str | None, durable: str | None,
    until_caught_up: bool, status_port: int | None, log_every: float,
) -> int:  # fmt: skip
    """Rebuild the journal of SOURCE from the stream alone in another database, verifying every row's
    link and hash; exit 1 with "mirror ERROR at seq N" on the first row that does not chain. A broker
    or database outage is logged and retried with backoff (ERROR in the status meanwhile). With
    --account, a PostgreSQL mirror URL that names no schema keeps the copy in schema propbot_<ID>."""
    from adapters.nats.mirror import Mirror, MirrorConfig

    db_url, schema, account_source = _account(db_url, account, mirror=True)
    source = source or account_source or "default"
    try:
        config = MirrorConfig(nats_url, db_url, source, stream, durable, schema=schema)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    _logging()
    service = Mirror(config, until_caught_up=until_caught_up)
    stopped = asyncio.run(_run_mirror(service, status_port, log_every))
    if service.failure is not None:
        click.echo(f"mirror ERROR: {service.failure}", err=True)
        return 1
    if not stopped:
        progress = service.progress
        click.echo(
            f"mirror OK: source {source}, head seq {progress.head_seq}, {progress.rows_written} rows written"
        )
    return 0


async def _run_mirror(service: object, status_port: int | None, log_every: float) -> bool:
    """Run the mirror until it is done or a signal stops it; True when a signal stopped it."""
    from adapters.nats.mirror import Mirror
    from adapters.nats.relay_status import serve_status

    assert isinstance(service, Mirror)
    log = logging.getLogger("propbot.mirror")
    service.start()
    runner = await serve_status(service, status_port) if status_port is not None else None

    async def report() -> None:
        while True:
            await asyncio.sleep(log_every)
            st = service.status()
            log.log(
                logging.ERROR if st["status"] == "ERROR" else logging.INFO,
                "mirror %s %s: head seq %d, %d rows written, pending %s, connected %s",
                st["source"], st["status"], st["head_seq"], st["rows_written"], st["pending"], st["connected"],
            )  # fmt: skip

    reporter = asyncio.create_task(report())
    stopper = asyncio.create_task(_until_signal())
    done = asyncio.create_task(service.done.wait())
    try:
        await asyncio.wait({stopper, done}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reporter, stopper, done):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if runner is not None:
            await runner.cleanup()
        await service.stop()
    return not service.done.is_set()
