"""Where a pair of operands sits: its stratum, and the fixed edge-case suite. Pure Python.

Uniform pairs hide what a model has not learned: with operands uniform in 0..999 only
1% of pairs have two one-token operands (both below 100 in base 100), and sums at a
token or decimal boundary are rarer still. So every evaluation also reports exact match
per stratum and on a fixed suite of edge cases.

A stratum is the operands' lengths in tokens crossed with whether the lowest tokens
carry (``a % base + b % base >= base``). For 3-digit operands in base 100 that gives
eight strata, from "1+1 tokens, no carry" (e.g. 5 + 7) to "2+2 tokens, carry"
(e.g. 150 + 250).

The edge-case suite (``edge_cases(operand_max, base)``), for operands 0..M:

- 0+0, 0+1, 1+0; M+0, 0+M, M+1, 1+M, M+M;
- for every boundary sum S within 2..2M (each power of the base, and each power of
  ten from 100): S split in half, S-1 and S+1 split the same way, and S-1 + 1,
  1 + S-1 (for base 100: 50+50, 50+49, 50+51, 99+1, 1+99, 500+500, 500+499, 500+501,
  999+1, 1+999);
- one-token pairs without a carry (2+3, 5+5 in base 100) and with one (base-1 + 1,
  1 + base-1, base-1 + base-1, base/2 + base/2).

Pairs outside 0..M are left out, and each pair appears once.

The carry boundary (``carry_boundary_pairs``): pairs whose lowest tokens sum to base-1
(one short of a carry, as 45 + 54 in base 100) or to base (the smallest carry, 45 + 55).
They are 2% of uniform pairs for 3-digit operands, spread over the strata, and small
models get them wrong far more often than the rest (docs/LOG.md), so
verification tests each of the two sums on its own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from addray.core.tokens import to_tokens


@dataclass(frozen=True, order=True)
class Stratum:
    len_a: int  # operand lengths in tokens
    len_b: int
    carry: bool  # the lowest tokens carry

    @property
    def name(self) -> str:
        return f"{self.len_a}+{self.len_b} tokens, {'carry' if self.carry else 'no carry'}"


def stratum_of(a: int, b: int, base: int) -> Stratum:
    return Stratum(len(to_tokens(a, base)), len(to_tokens(b, base)),
                   a % base + b % base >= base)


def length_range(length: int, operand_max: int, base: int) -> tuple[int, int] | None:
    """Operands of ``length`` tokens within 0..operand_max, as (low, high), or None."""
    low = 0 if length == 1 else base ** (length - 1)
    high = min(base**length - 1, operand_max)
    return (low, high) if low <= high else None


def _residues(low: int, high: int, base: int) -> tuple[int, int]:
    """Smallest and largest ``x % base`` over low..high."""
    if high - low + 1 >= base or low % base > high % base:
        return 0, base - 1
    return low % base, high % base


def all_strata(operand_max: int, base: int) -> list[Stratum]:
    """Every stratum that operands 0..operand_max can produce, in order."""
    lengths = range(1, len(to_tokens(operand_max, base)) + 1)
    out = []
    for la in lengths:
        for lb in lengths:
            ra, rb = length_range(la, operand_max, base), length_range(lb, operand_max, base)
            (lo_a, hi_a), (lo_b, hi_b) = _residues(*ra, base), _residues(*rb, base)
            if lo_a + lo_b < base:
                out.append(Stratum(la, lb, False))
            if hi_a + hi_b >= base:
                out.append(Stratum(la, lb, True))
    return out


def edge_cases(operand_max: int, base: int) -> list[tuple[int, int]]:
    """The fixed edge-case suite for operands 0..operand_max (module docstring)."""
    m = operand_max
    pairs = [(0, 0), (0, 1), (1, 0), (m, 0), (0, m), (m, 1), (1, m), (m, m)]
    boundaries = set()
    k = 1
    while base**k <= 2 * m:
        boundaries.add(base**k)
        k += 1
    k = 2
    while 10**k <= 2 * m:
        boundaries.add(10**k)
        k += 1
    for s in sorted(boundaries):
        half = s // 2
        for total in (s, s - 1, s + 1):
            pairs.append((half, total - half))
        pairs += [(s - 1, 1), (1, s - 1)]
    pairs += [(2, 3), (base // 20, base // 20), (base - 1, 1), (1, base - 1),
              (base - 1, base - 1), (base // 2, base // 2)]
    seen, out = set(), []
    for a, b in pairs:
        if 0 <= a <= m and 0 <= b <= m and (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return out


def carry_boundary_pairs(low_sum: int, operand_max: int, base: int, n: int,
                         seed: int) -> list[tuple[int, int]]:
    """Up to ``n`` distinct pairs in 0..operand_max whose lowest tokens sum to ``low_sum``,
    drawn with ``seed``; every such pair when there are at most ``n``."""
    m = operand_max
    lows = [x for x in range(base) if 0 <= low_sum - x < base and max(x, low_sum - x) <= m]
    tops = m // base + 1  # values of the tokens above the lowest
    rng = random.Random(seed * 1_000_003 + low_sum)
    if len(lows) * tops * tops <= 4 * n + 10_000:  # few: list them all
        pairs = [(ha * base + x, hb * base + low_sum - x)
                 for ha in range(tops) for hb in range(tops) for x in lows]
        pairs = [(a, b) for a, b in pairs if a <= m and b <= m]
        return pairs if len(pairs) <= n else rng.sample(pairs, n)
    found: dict[tuple[int, int], None] = {}
    for _ in range(50 * n):  # many: draw until n distinct ones
        if len(found) >= n:
            break
        x = rng.choice(lows)
        a, b = rng.randrange(tops) * base + x, rng.randrange(tops) * base + low_sum - x
        if a <= m and b <= m:
            found.setdefault((a, b))
    return list(found)


def tally(strata: list[Stratum], right: list[bool]) -> dict[Stratum, tuple[int, int]]:
    """Per stratum: (answered right, pairs), in stratum order."""
    out: dict[Stratum, list[int]] = {}
    for s, ok in zip(strata, right, strict=True):
        counts = out.setdefault(s, [0, 0])
        counts[0] += int(ok)
        counts[1] += 1
    return {s: (r, n) for s, (r, n) in sorted(out.items())}


def learned(exact_match: float, worst_stratum: float, edge_cases: float,
            carry_boundary: float, threshold: float = 0.99) -> bool:
    """The verdict "has learned addition": every edge case right, and exact match at or
    above ``threshold`` on uniform pairs, in every stratum and at the carry boundary."""
    return (edge_cases >= 1.0 and worst_stratum >= threshold and exact_match >= threshold
            and carry_boundary >= threshold)
