"""The outbox wire format and the consumer gate, without a broker: subjects stay one token per field,
a message carries the row exactly, the decoder refuses what is not a row, the gate drops repeats and
refuses holes, the mirror comparison names the first difference."""

from __future__ import annotations

import json

import pytest

from engine.journal import GENESIS_HASH
from engine.mirror_compare import compare_with_mirror
from engine.outbox import (
    ChainBroken,
    OutboxError,
    OutboxGap,
    SeqGate,
    check_link,
    check_source,
    decode_row,
    encode_row,
    recompute_hash,
    subject_for,
)
from engine.persistence.outbox_source import default_source


def row(seq: int = 1, prev: str = GENESIS_HASH, sid: str = "a") -> tuple[object, ...]:
    r = (
        seq,
        "order",
        sid,
        1,
        "create",
        None,
        "NEW",
        '{"q":"0.1"}',
        "ops",
        "",
        1,
        "2026-12-01T00:00:00.000000Z",
        prev,
        "",
        "host:1:ab",  # engine_id (hashed with the row when set)
    )
    return (*r[:13], recompute_hash(r), r[14])  # type: ignore[arg-type]


def test_subjects_escape_what_would_split_or_wildcard_a_token() -> None:
    assert subject_for("acct1", "order", "web.1*>x y%") == "propbot.acct1.order.web%2E1%2A%3Ex%20y%25"
    assert subject_for("acct1", "order", "ok:id/-_") == "propbot.acct1.order.ok:id/-_"


@pytest.mark.parametrize("bad", ["", "a.b", "a*", "x" * 65, "ä"])
def test_a_source_name_is_one_safe_token(bad: str) -> None:
    with pytest.raises(ValueError, match="source must be"):
        check_source(bad)


def test_a_message_carries_the_row_exactly_and_decodes_back() -> None:
    r = row()
    msg = encode_row("s", r)  # type: ignore[arg-type]
    assert msg.headers["Nats-Msg-Id"] == "s:1"
    assert (msg.headers["Propbot-Hash"], msg.headers["Propbot-Prev-Hash"]) == (r[13], r[12])
    assert decode_row(msg.data) == r
    assert json.loads(msg.data)["payload"] == '{"q":"0.1"}'  # the stored text, not re-serialised


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[1]",
        b'{"seq": 1}',
        json.dumps({**json.loads(encode_row("s", row()).data), "seq": "1"}).encode(),
    ],  # type: ignore[arg-type]
)
def test_what_is_not_a_journal_row_is_refused(data: bytes) -> None:
    with pytest.raises(OutboxError):
        decode_row(data)


def test_the_link_check_names_the_seq() -> None:
    first = row()
    check_link(GENESIS_HASH, first)  # type: ignore[arg-type]
    with pytest.raises(ChainBroken, match="seq 2: prev_hash"):
        check_link(str(first[13]), row(2, prev="f" * 64))  # type: ignore[arg-type]
    tampered = (*first[:8], "mallory", *first[9:])
    with pytest.raises(ChainBroken, match="seq 1: stored hash"):
        check_link(GENESIS_HASH, tampered)  # type: ignore[arg-type]


def test_the_gate_drops_repeats_per_source_and_refuses_holes() -> None:
    gate = SeqGate({"a": 2})
    assert [gate.admit("a", s) for s in (1, 2, 3, 3, 4)] == [False, False, True, False, True]
    assert gate.admit("b", 1)
    with pytest.raises(OutboxGap, match=r"seqs 5\.\.6 are missing"):
        gate.admit("a", 7)


def test_the_comparison_names_the_first_difference() -> None:
    a = [(i, *("x",) * 12, f"h{i}") for i in range(1, 6)]
    b = [*a[:3], (4, *("x",) * 12, "other"), a[4]]
    assert compare_with_mirror(a, a).difference is None  # type: ignore[arg-type]
    diff = compare_with_mirror(a, b).difference  # type: ignore[arg-type]
    assert diff is not None
    assert diff.seq == 4
    lag = compare_with_mirror(a, a[:3], mirror_may_lag=True)  # type: ignore[arg-type]
    assert (lag.difference, lag.primary_last, lag.mirror_last) == (None, 5, 3)
    assert compare_with_mirror(a, a[:3]).difference.seq == 4  # type: ignore[arg-type, union-attr]


def test_the_default_source_is_the_urls_schema() -> None:
    assert default_source("postgresql+psycopg://u@h/db?options=-csearch_path%3Dacct1") == "acct1"
    assert default_source("sqlite:////tmp/j.db") == "default"
