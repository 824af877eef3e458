"""canonical_json (the C encoder built once) writes exactly what JSONEncoder.encode wrote, and fails the
same way: every row's hash is over this text, so one character of difference and old journals no longer
verify against what the engine would write for the same payload."""

from __future__ import annotations

import enum
import json
import threading
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.journal import canonical_json

OLD = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


class Text(enum.StrEnum):
    A = "a"
    ODD = "é\x00\u2028\U0001f600"


class Number(enum.IntEnum):
    ONE = 1
    BIG = 2**70


class Flags(enum.IntFlag):
    A = 1
    B = 2


class Mixed(str, enum.Enum):  # noqa: UP042 (str() differs from StrEnum: the case to check)
    Q = "q"


class MyStr(str):
    pass


class MyInt(int):
    pass


class MyFloat(float):
    pass


def outcome(encode: Any, payload: Any) -> tuple[Any, ...]:
    try:
        return ("ok", encode(payload))
    except Exception as exc:  # the same error, whichever (e.g. decimal.InvalidOperation sorting keys)
        return ("error", type(exc).__name__, str(exc))


ODD = [*Text, *Number, Flags.A, Flags.A | Flags.B, Mixed.Q, MyStr("s"), MyInt(7), MyFloat(1.5),
       MyFloat(float("nan")), True, False, -0.0, 1e308, 5e-324, 2**64, -(2**200)]  # fmt: skip
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**300), max_value=2**300),
    st.floats(), st.text(), st.text(alphabet=st.characters(max_codepoint=0x20)), st.sampled_from(ODD),
    st.decimals(), st.just(b"x"), st.just(object()),
)  # fmt: skip
keys = st.one_of(
    st.text(),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(),
    st.sampled_from(ODD),
    st.decimals(allow_nan=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(keys, inner, max_size=4),
    ),
    max_leaves=25,
)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, max_size=6))
def test_canonical_json_is_the_old_encoder_text_for_text_and_error_for_error(payload: dict[Any, Any]) -> None:
    assert outcome(canonical_json, payload) == outcome(OLD, payload)


def test_a_self_referencing_payload_fails_with_recursion_error_not_a_hang() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    nested: list[Any] = []
    nested.append(nested)
    for payload in (loop, {"x": nested}):
        with pytest.raises(RecursionError):
            canonical_json(payload)
    assert canonical_json({"ok": [1]}) == '{"ok":[1]}'  # the shared encoder still works afterwards


def test_the_shared_encoder_gives_every_thread_the_same_text() -> None:
    payloads = [
        {"i": i, "s": "é" * (i % 7), "l": [i, {"k": Decimal(i).is_zero()}], "f": i / 7} for i in range(2000)
    ]
    want = [OLD(p) for p in payloads]
    got: list[list[str]] = []

    def encode() -> None:
        got.append([canonical_json(p) for p in payloads])

    threads = [threading.Thread(target=encode) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [want] * 8
