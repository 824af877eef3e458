"""A journal damaged in ways that used to crash start-up (invalid-JSON payload, schema_version 0, a
dropped table) now leaves the API up answering 503 journal_corrupt with the seq."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.server import ApiServer, paper_settings
from tests.journal import attacker
from tests.journal.test_tamper_damage import at

DAMAGE = {
    "invalid JSON payload": (lambda url: attacker.rewrite(url, at(1, 7, "{not json"), recompute_from=1), 2),
    "schema_version 0": (lambda url: attacker.rewrite(url, at(1, 10, 0), recompute_from=1), 2),
    "dropped journal table": (lambda url: attacker.execute(url, "DROP TABLE journal"), 0),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_journal_answers_503_naming_the_seq(tmp_path: Path, kind: str) -> None:
    damage, seq = DAMAGE[kind]
    with ApiServer(paper_settings(tmp_path)) as api:
        tokens = api.tokens
        assert api.client("viewer").get("/api/live/ping").status_code == 200
    damage(f"sqlite:///{tmp_path / 'journal.db'}")
    with ApiServer(paper_settings(tmp_path), tokens=tokens) as api:
        r = api.client("viewer").get("/api/live/ping")
        assert r.status_code == 503
        assert r.json()["reason"] == "journal_corrupt"
        assert r.json()["detail"]["seq"] == seq
        verify = api.client("auditor").get("/api/journal/verify")
        assert verify.status_code == 503
        assert verify.json()["detail"]["seq"] == seq
        assert api.client().get("/healthz").status_code == 200
