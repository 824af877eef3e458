"""`--account` on `propbot relay`, `propbot mirror` and `journal verify --against-mirror` selects the
account's chain the way `propbot serve --account` does: a PostgreSQL URL gets search_path
propbot_<account> (a URL that already picks a schema is refused as ambiguous), and the source defaults to
propbot_<account>. Each case runs the real commands: the primary on PostgreSQL mirrored to SQLite, and a
SQLite primary mirrored into an account schema of PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from api.cli import main
from api.journal_url import with_search_path
from api.settings import account_mirror_url
from engine.persistence.migrate import upgrade
from engine.persistence.sql_journal import SqlJournal
from tests.conftest import PG_SKIP, PG_URL
from tests.outbox.broker import ROOT, Broker, stop, wait_for_count
from tests.outbox.test_relay import fill

pytestmark = pytest.mark.postgres
PG = "postgresql+psycopg://auditor@audit-db:5432/mirror"


@pytest.fixture
def account() -> Iterator[str]:
    """A fresh account id; its schema is dropped afterwards."""
    if not PG_URL:
        pytest.skip(PG_SKIP)
    acct = f"t{uuid.uuid4().hex[:10]}"
    yield acct
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS propbot_{acct} CASCADE"))
    admin.dispose()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def _relay(db_url: str, nats_url: str, account: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "relay", "--db", db_url, "--nats", nats_url, "--account", account,
         "--log-every", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.mark.parametrize("primary", ["postgres", "sqlite"])
async def test_relay_mirror_and_verify_take_the_account(
    account: str, primary: str, nats_broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = f"propbot_{account}"
    if primary == "postgres":  # the primary is the account's schema; the mirror a SQLite file
        journal_url, db_arg = with_search_path(PG_URL, schema), PG_URL
        mirror_arg = f"sqlite:///{tmp_path / 'mirror.db'}"
        admin = create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        admin.dispose()
    else:  # the primary is the account's file; the mirror the account's schema of PostgreSQL
        journal_url = db_arg = f"sqlite:///{tmp_path / 'journal.db'}"
        mirror_arg = PG_URL
    upgrade(journal_url)
    journal = SqlJournal(journal_url)
    fill(journal, 40)
    relay = _relay(db_arg, nats_broker.url, account)
    try:
        assert await wait_for_count(nats_broker.url, "PROPBOT", schema, 40) == 40  # source propbot_<account>
    finally:
        log = stop(relay)
    mirrored = _run("mirror", "--nats", nats_broker.url, "--db", mirror_arg, "--account", account,
                    "--until-caught-up")  # fmt: skip
    assert mirrored.returncode == 0, mirrored.stdout + mirrored.stderr + log
    assert f"mirror OK: source {schema}, head seq 40, 40 rows written" in mirrored.stdout
    if primary == "sqlite":  # the copy went into the account's schema of the mirror database
        copy = SqlJournal(with_search_path(PG_URL, schema))
        assert list(copy.scan()) == list(journal.scan())
        copy.close()
    journal.close()
    capsys.readouterr()
    verify = ["journal", "verify", "--db", db_arg, "--account", account, "--data-dir", str(tmp_path / "data")]
    assert main([*verify, "--against-mirror", mirror_arg]) == 0
    assert "mirror OK: 40 rows equal, last seq 40" in capsys.readouterr().out


def test_the_relay_refuses_an_account_beside_a_url_that_picks_a_schema() -> None:
    if not PG_URL:
        pytest.skip(PG_SKIP)
    done = _run("relay", "--db", with_search_path(PG_URL, "elsewhere"), "--account", "desk_a",
                "--nats", "nats://127.0.0.1:1")  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the journal URL selects schema elsewhere and the account is desk_a" in done.stderr
    done = _run("relay", "--db", PG_URL, "--account", "Desk-A", "--nats", "nats://127.0.0.1:1")
    assert done.returncode == 2
    assert "an account id is 1-30 of a-z, 0-9 and _" in done.stderr


def test_a_mirror_url_naming_a_schema_is_the_auditors_choice() -> None:
    picked = with_search_path(PG, "audit_desk_a")
    assert account_mirror_url(PG, "desk_a") == (with_search_path(PG, "propbot_desk_a"), "propbot_desk_a")
    assert account_mirror_url(picked, "desk_a") == (picked, None)  # used as given, not created
    assert account_mirror_url("sqlite:///m.db", "desk_a") == ("sqlite:///m.db", None)
    assert account_mirror_url(PG, None) == (PG, None)
