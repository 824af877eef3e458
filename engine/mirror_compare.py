"""Comparing the primary journal with the auditors' mirror, row by row in seq order.

A consistent rewrite of the primary's tail (rows changed, hashes recomputed, triggers dropped) still
verifies on its own: the chain is only as trustworthy as the database holding it. The mirror was built
from the published stream by another party, so the first seq whose hash differs (or that one side lacks)
is where the primary's history stops being the history that was published.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.journal import RawRow


@dataclass(frozen=True, slots=True)
class MirrorDifference:
    seq: int
    problem: str


@dataclass(frozen=True, slots=True)
class MirrorComparison:
    compared: int  # seqs present on both sides with equal hashes
    primary_last: int
    mirror_last: int
    difference: MirrorDifference | None


def compare_with_mirror(
    primary: Iterable[RawRow], mirror: Iterable[RawRow], *, mirror_may_lag: bool = False
) -> MirrorComparison:
    """The first seq where the two differ. With `mirror_may_lag`, primary rows past the mirror's last
    row are not a difference (the mirror has not received them yet)."""
    p_iter, m_iter = iter(primary), iter(mirror)
    p, m = next(p_iter, None), next(m_iter, None)
    compared = p_last = m_last = 0
    diff: MirrorDifference | None = None
    while p is not None or m is not None:
        if p is not None and (m is None or p[0] < m[0]):
            if m is None and mirror_may_lag:
                p_last = p[0]
                p = next(p_iter, None)
                continue
            diff = MirrorDifference(p[0], "in the primary, missing in the mirror")
            break
        if m is not None and (p is None or m[0] < p[0]):
            diff = MirrorDifference(m[0], f"in the mirror (hash {m[13]}), missing in the primary")
            break
        assert p is not None
        assert m is not None
        if p[13] != m[13]:
            diff = MirrorDifference(p[0], f"primary hash {p[13]}, mirror hash {m[13]}")
            break
        compared += 1
        p_last, m_last = p[0], m[0]
        p, m = next(p_iter, None), next(m_iter, None)
    return MirrorComparison(compared, p_last, m_last, diff)
