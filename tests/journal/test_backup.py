"""`propbot journal backup`: a consistent SQLite copy (the -wal content included) that is verified."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from api.cli import main
from engine.checkpoint import engine_log
from engine.persistence.sql_journal import SqlJournal
from engine.replay import replay
from tests.journal.test_tamper_checkpoint import audit


def test_backup_copies_rows_still_in_the_wal_and_verifies_the_copy(
    journal_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "backups" / "journal-copy.db"
    if not journal_url.startswith("sqlite"):
        assert main(["journal", "backup", "--db", journal_url, "--to", str(target)]) == 2
        assert "use pg_dump (not implemented)" in capsys.readouterr().err
        assert not target.exists()
        return
    j = SqlJournal(journal_url)  # stays open: its 65 rows are in journal.db-wal, not yet in journal.db
    for n in range(1, 66):
        j.append([audit(n)])
    head = j.head()
    cplog = engine_log(Path(journal_url.removeprefix("sqlite:///")).parent)  # next to the journal
    cplog.append(*head)
    capsys.readouterr()
    assert main(["journal", "backup", "--db", journal_url, "--to", str(target)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"backup OK: {target}: 65 rows, head seq 65 hash {head[1]}")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    j.close()
    copy = SqlJournal(f"sqlite:///{target}")
    assert replay(copy.scan()).last_hash == head[1]
    copy.close()
    before = target.read_bytes()
    assert main(["journal", "backup", "--db", journal_url, "--to", str(target)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert target.read_bytes() == before
