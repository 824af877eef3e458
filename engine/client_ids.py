"""Which orders are ours: every client order id this engine places starts with its configured prefix.

Binance's client order ids (`newClientOrderId`) match `^[a-zA-Z0-9-_]{1,36}$` (fix-api.md "Client order
ID fields"; the REST and WebSocket APIs take the same ids). The prefix must match that alphabet and leave
room for at least 16 random hex characters (64 bits) in a generated id, so it is at most 20 characters.
Orders on the account without it (another bot's, a human's) are foreign: never adopted, never
cancelled, reported (docs/api.md "Own and foreign orders").
"""

from __future__ import annotations

import re
import uuid

DEFAULT_PREFIX = "pb-"
MAX_PREFIX_LEN = 20
_MAX_ID_LEN = 36
_RANDOM_HEX = 24  # what a generated id carries at most (fewer only when the prefix is long)
PREFIX_PATTERN = re.compile(rf"^[a-zA-Z0-9_-]{{1,{MAX_PREFIX_LEN}}}$")


def check_prefix(prefix: str) -> str:
    """The prefix unchanged when it is valid.

    Raises:
        ValueError: naming the rule it breaks.
    """
    if not PREFIX_PATTERN.fullmatch(prefix):  # fullmatch: "$" alone would let a trailing newline in
        raise ValueError(
            f"client order id prefix must match ^[a-zA-Z0-9_-]{{1,{MAX_PREFIX_LEN}}}$ "
            f"(Binance's id alphabet, leaving room for 16 random characters in 36)"
        )
    return prefix


def is_own(client_order_id: str, prefix: str) -> bool:
    return client_order_id.startswith(prefix)


def new_client_order_id(prefix: str = DEFAULT_PREFIX) -> str:
    """A fresh id: the prefix and random hex, 36 characters at most."""
    return prefix + uuid.uuid4().hex[: min(_RANDOM_HEX, _MAX_ID_LEN - len(prefix))]
