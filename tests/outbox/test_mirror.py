"""The auditors' mirror: rebuilt from the stream alone, it verifies each row's link and hash, is
idempotent on redelivery, refuses the first row that does not chain; `journal verify --against-mirror`
names the first rewritten seq of a consistent rewrite that plain verify cannot see."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from adapters.nats.mirror import MirrorConfig, run_mirror
from adapters.nats.outbox_consumer import OutboxConsumer
from adapters.nats.relay import OutboxRelay, RelayConfig
from api.cli import main
from engine.outbox import ChainBroken, OutboxError, encode_row
from engine.persistence.sql_journal import SqlJournal
from tests.journal import attacker
from tests.outbox.broker import ROOT, Broker
from tests.outbox.test_relay import fill, relay_until


def _mirror_cli(nats_url: str, mirror_url: str, source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "mirror", "--nats", nats_url, "--db", mirror_url, "--source", source,
         "--until-caught-up"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def _published(journal_url: str, journal: SqlJournal, broker: Broker, source: str, n: int) -> None:
    fill(journal, n)
    await asyncio.wait_for(relay_until(OutboxRelay(RelayConfig(journal_url, broker.url, source)), n), 120)


async def test_the_mirror_rebuilds_the_journal_and_a_tail_rewrite_is_found_at_its_first_seq(
    journal_url: str, journal: SqlJournal, mirror_url: str, nats_broker: Broker, source: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    await _published(journal_url, journal, nats_broker, source, 300)
    done = _mirror_cli(nats_broker.url, mirror_url, source)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"mirror OK: source {source}, head seq 300, 300 rows written" in done.stdout
    mirror = SqlJournal(mirror_url)
    assert list(mirror.scan()) == list(journal.scan())
    mirror.close()
    again = _mirror_cli(nats_broker.url, mirror_url, source)  # nothing new: idempotent
    assert "head seq 300, 0 rows written" in again.stdout, again.stdout + again.stderr

    verify = ["journal", "verify", "--db", journal_url, "--data-dir", str(tmp_path / "data")]
    capsys.readouterr()
    assert main([*verify, "--against-mirror", mirror_url]) == 0
    assert "mirror OK: 300 rows equal, last seq 300" in capsys.readouterr().out

    def tail_rewritten(rows: attacker.Rows) -> attacker.Rows:
        for row in rows[200:]:
            row[8] = "mallory"  # the actor of the last 100 rows
        return rows

    attacker.rewrite(journal_url, tail_rewritten, recompute_from=200)
    assert main(verify) == 0  # the chain alone still verifies: this is why the mirror matters
    assert "journal OK: 300 rows" in capsys.readouterr().out
    assert main([*verify, "--against-mirror", mirror_url]) == 1
    assert "mirror DIFFERS at seq 201: primary hash " in capsys.readouterr().out


async def test_missing_rows_on_either_side_differ(
    journal_url: str, journal: SqlJournal, mirror_url: str, nats_broker: Broker, source: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    await _published(journal_url, journal, nats_broker, source, 20)
    assert (
        await run_mirror(MirrorConfig(nats_broker.url, mirror_url, source), until_caught_up=True)
    ).head_seq == 20
    fill(journal, 5, "more")  # the mirror has not seen these
    verify = [
        "journal",
        "verify",
        "--db",
        journal_url,
        "--data-dir",
        str(tmp_path / "data"),
        "--against-mirror",
        mirror_url,
    ]
    capsys.readouterr()
    assert main(verify) == 1
    assert "mirror DIFFERS at seq 21: in the primary, missing in the mirror" in capsys.readouterr().out
    assert main([*verify, "--mirror-may-lag"]) == 0
    assert "mirror behind by 5 rows" in capsys.readouterr().out
    attacker.rewrite(journal_url, lambda rows: rows[:18], recompute_from=None)  # the tail cut off
    assert main([*verify, "--mirror-may-lag"]) == 1
    assert "mirror DIFFERS at seq 19: in the mirror" in capsys.readouterr().out


async def test_redelivery_from_the_start_is_idempotent(
    journal_url: str, journal: SqlJournal, mirror_url: str, nats_broker: Broker, source: str
) -> None:
    await _published(journal_url, journal, nats_broker, source, 50)
    config = MirrorConfig(nats_broker.url, mirror_url, source)
    assert (await run_mirror(config, until_caught_up=True)).rows_written == 50
    nc = await nats.connect(nats_broker.url)
    await nc.jetstream().delete_consumer("PROPBOT", config.durable_name)  # everything is delivered again
    await nc.close()
    again = await run_mirror(config, until_caught_up=True)
    assert (again.head_seq, again.rows_written) == (50, 0)


async def test_the_first_row_that_does_not_chain_is_refused(
    journal_url: str, journal: SqlJournal, mirror_url: str, nats_broker: Broker, source: str
) -> None:
    await _published(journal_url, journal, nats_broker, source, 10)
    forged = list(journal.scan())[-1]
    forged_row = (11, *forged[1:12], "f" * 64, *forged[13:])  # seq 11 claiming a predecessor that is not 10
    nc = await nats.connect(nats_broker.url)
    msg = encode_row(source, forged_row)  # type: ignore[arg-type]
    await nc.jetstream().publish(msg.subject, msg.data, headers=msg.headers)
    await nc.close()
    with pytest.raises(ChainBroken, match="seq 11: prev_hash"):
        await run_mirror(MirrorConfig(nats_broker.url, mirror_url, source), until_caught_up=True)
    mirror = SqlJournal(mirror_url)
    assert mirror.last_seq() == 10  # the rows before it are kept, nothing after it is written
    mirror.close()
    done = _mirror_cli(nats_broker.url, mirror_url, source)
    assert done.returncode == 1
    assert "mirror ERROR: seq 11: prev_hash" in done.stderr


@pytest.mark.parametrize("journal_url", ["sqlite"], indirect=True)
async def test_a_mirror_on_a_fresh_database_reads_everything_despite_the_durables_ack_floor(
    journal_url: str, journal: SqlJournal, nats_broker: Broker, source: str, tmp_path: Path
) -> None:
    """The durable consumer `mirror-<source>` acknowledged 50 rows for a first database; a mirror on a
    new (or restored) database under the same durable used to resume after the ack floor: 0 rows written,
    `caught_up`, exit 0 with an empty copy. Its position is its own database's last seq."""
    await _published(journal_url, journal, nats_broker, source, 50)
    first = MirrorConfig(nats_broker.url, f"sqlite:///{tmp_path / 'm1.db'}", source)
    assert (await run_mirror(first, until_caught_up=True)).rows_written == 50
    fresh = MirrorConfig(nats_broker.url, f"sqlite:///{tmp_path / 'm2.db'}", source)
    assert (await run_mirror(fresh, until_caught_up=True)).rows_written == 50
    # a consumer restored to seq 20 (its own store behind the durable) gets 21..50, no false hole
    nc = await nats.connect(nats_broker.url)
    try:
        consumer = await OutboxConsumer.open(
            nc.jetstream(), stream="PROPBOT", source=source, durable=first.durable_name, last_seq=20
        )
        rows = await consumer.fetch(512, timeout=1.0)
        assert [r.seq for r in rows] == list(range(21, 51))
        await consumer.close()
    finally:
        await nc.close()


async def test_the_rows_before_a_message_with_a_wrong_header_hash_are_kept(
    journal_url: str, journal: SqlJournal, mirror_url: str, nats_broker: Broker, source: str
) -> None:
    """A message whose header hash is not its row's (published by someone else into the source's
    subjects) is refused as documented, and the rows fetched before it in the same batch are evidence
    too: they used to be dropped with it (the consumer raised before returning them), leaving the
    mirror empty."""
    await _published(journal_url, journal, nats_broker, source, 10)
    good = list(journal.scan())[-1]
    msg = encode_row(source, (11, *good[1:12], good[13], "f" * 64, good[14]))  # type: ignore[arg-type]
    nc = await nats.connect(nats_broker.url)
    await nc.jetstream().publish(msg.subject, msg.data, headers={**msg.headers, "Propbot-Hash": "0" * 64})
    await nc.close()
    with pytest.raises(OutboxError, match="seq 11: header hash differs"):
        await run_mirror(MirrorConfig(nats_broker.url, mirror_url, source), until_caught_up=True)
    mirror = SqlJournal(mirror_url)
    assert mirror.last_seq() == 10
    mirror.close()
    with pytest.raises(OutboxError, match="seq 11: header hash differs"):  # and again after a restart
        await run_mirror(MirrorConfig(nats_broker.url, mirror_url, source), until_caught_up=True)


async def test_a_mirror_database_holding_another_chain_is_refused(
    nats_broker: Broker, source: str, tmp_path: Path
) -> None:
    """The mirror pointed at a database that holds another account's copy (50 rows) for a source of 30:
    every row of the source is at or below the database's head, so all were dropped as repeats unread,
    and the mirror said caught up, 0 rows written, exit 0. A repeat must be the row the mirror holds."""
    from tests.outbox.test_source_collision import _journal

    other, this = _journal(tmp_path, "acct0", 50), _journal(tmp_path, "acct1", 30)
    s_other, s_this = f"{source}-other", f"{source}-this"
    for url, src, n in ((other, s_other, 50), (this, s_this, 30)):
        await asyncio.wait_for(relay_until(OutboxRelay(RelayConfig(url, nats_broker.url, src)), n), 60)
    mirror_db = f"sqlite:///{tmp_path / 'audit.db'}"
    assert (
        await run_mirror(MirrorConfig(nats_broker.url, mirror_db, s_other), until_caught_up=True)
    ).head_seq == 50
    with pytest.raises(ChainBroken, match="seq 1: the stream's row has hash"):
        await run_mirror(MirrorConfig(nats_broker.url, mirror_db, s_this), until_caught_up=True)


def test_a_mirror_database_without_the_mirror_table_is_named_not_the_primary(
    journal_url: str, journal: SqlJournal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: "journal is broken at seq 0: no journal table", as if the primary were damaged
    fill(journal, 3)
    empty = tmp_path / "not-a-mirror.db"
    sqlite3.connect(empty).close()
    verify = ["journal", "verify", "--db", journal_url, "--data-dir", str(tmp_path / "data")]
    capsys.readouterr()
    assert main([*verify, "--against-mirror", f"sqlite:///{empty}"]) == 2
    out = capsys.readouterr()
    assert "journal OK: 3 rows" in out.out
    assert (
        out.err.strip()
        == "propbot: error: --against-mirror: the mirror database is not usable: no journal table"
    )
