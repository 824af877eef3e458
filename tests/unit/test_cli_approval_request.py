"""`propbot approve` reads an approval request file: a malformed one is a CliError naming the file, never a
traceback (an expires_at that is no date would otherwise overflow when shown before signing)."""

from __future__ import annotations

import json

import pytest

from api.cli_common import CliError
from api.cli_keys import describe_request, read_request

_REQUEST = {"id": "apr-1", "action": "arm", "session_id": "testnet-1", "requester": "alice",
            "nonce": "n" * 32, "status": "PENDING", "expires_at": 1_900_000_000}  # fmt: skip


def test_a_pending_request_is_read_and_described() -> None:
    request = read_request(json.dumps({"approval": _REQUEST}), "req.json")
    assert "request expires 2030-03-17" in describe_request(request, "bob")


@pytest.mark.parametrize("expires_at", [10**20, 253402300800, -1, 0])
def test_an_expires_at_that_is_no_date_is_refused_naming_the_file(expires_at: int) -> None:
    with pytest.raises(CliError, match=r"^req\.json: expires_at .* is not a time"):
        read_request(json.dumps({**_REQUEST, "expires_at": expires_at}), "req.json")
