"""Audit stream ids are unique within a process, differ in a forked child, and keep uuid4's length."""

from __future__ import annotations

import os

from engine.audit import audit_entry


def _id() -> str:
    return audit_entry("alice", "api.live.order", {}).stream_id


def test_ids_are_unique_and_as_long_as_a_uuid_hex() -> None:
    ids = [_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert {len(i.removeprefix("api.live.order-")) for i in ids} == {32}


def test_a_forked_child_draws_its_own_prefix() -> None:
    parent = _id().removeprefix("api.live.order-")[:16]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its prefix and leave at once
        os.write(write, _id().removeprefix("api.live.order-")[:16].encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert len(child) == 16
    assert child != parent
