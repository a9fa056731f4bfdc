import pytest

from addray.core import strata
from addray.core.strata import Stratum


@pytest.mark.parametrize("a,b,base,expected", [
    (0, 0, 100, Stratum(1, 1, False)),
    (99, 1, 100, Stratum(1, 1, True)),      # 99 + 1 = 100: the low tokens carry
    (50, 49, 100, Stratum(1, 1, False)),
    (99, 100, 100, Stratum(1, 2, False)),   # 100 is two tokens [1, 0]
    (100, 999, 100, Stratum(2, 2, False)),  # 00 + 99: no carry
    (999, 999, 100, Stratum(2, 2, True)),
    (5, 995, 100, Stratum(1, 2, True)),
    (9, 1, 10, Stratum(1, 1, True)),        # any base the config allows
    (10, 9, 10, Stratum(2, 1, False)),
    (999, 1, 10, Stratum(3, 1, True)),
])
def test_stratum_of_hand_picked_pairs(a, b, base, expected):
    assert strata.stratum_of(a, b, base) == expected


def test_all_strata_for_three_digit_operands_in_base_100():
    assert strata.all_strata(999, 100) == [Stratum(la, lb, c) for la in (1, 2) for lb in (1, 2)
                                          for c in (False, True)]
    assert strata.all_strata(999, 100)[0].name == "1+1 tokens, no carry"


def test_all_strata_leaves_out_what_cannot_happen():
    # operands 0..5 in base 100: one token each, and 5 + 5 < 100 never carries
    assert strata.all_strata(5, 100) == [Stratum(1, 1, False)]
    # operands 0..99 in base 10 (the tests' small problem): 1 and 2 tokens, both carries
    assert len(strata.all_strata(99, 10)) == 8


def test_edge_case_suite_base_100():
    suite = strata.edge_cases(999, 100)
    for pair in [(0, 0), (0, 1), (1, 0), (999, 0), (0, 999), (999, 1), (1, 999), (999, 999),
                 (50, 50), (50, 49), (50, 51), (99, 1), (1, 99), (500, 500), (500, 499),
                 (500, 501), (999, 1), (5, 5), (2, 3), (99, 99)]:
        assert pair in suite, pair
    assert len(suite) == len(set(suite))
    assert any(a + b == 1000 for a, b in suite) and any(a + b == 100 for a, b in suite)


def test_edge_cases_stay_in_range():
    for m, base in ((99, 10), (20, 10), (999, 100), (5, 100)):
        assert all(0 <= a <= m and 0 <= b <= m for a, b in strata.edge_cases(m, base))


def test_learned_needs_every_part():
    assert strata.learned(0.995, 0.99, 1.0, 0.99)
    assert not strata.learned(0.995, 0.99, 0.95, 1.0)   # one edge case wrong
    assert not strata.learned(0.995, 0.98, 1.0, 1.0)    # a weak stratum
    assert not strata.learned(0.985, 0.99, 1.0, 1.0)    # uniform pairs below 99%
    assert not strata.learned(0.995, 0.99, 1.0, 0.98)   # wrong at the carry boundary


def test_carry_boundary_pairs_sum_their_low_tokens_to_the_boundary():
    for low_sum in (99, 100):
        pairs = strata.carry_boundary_pairs(low_sum, 999, 100, 2000, seed=0)
        assert len(pairs) == len(set(pairs)) == 2000
        assert all(a % 100 + b % 100 == low_sum and 0 <= a <= 999 and 0 <= b <= 999
                   for a, b in pairs)
        # spread over the tokens above: every high token of a and of b appears
        assert {a // 100 for a, _ in pairs} == set(range(10)) == {b // 100 for _, b in pairs}
        assert pairs == strata.carry_boundary_pairs(low_sum, 999, 100, 2000, seed=0)
        assert pairs != strata.carry_boundary_pairs(low_sum, 999, 100, 2000, seed=1)
    # all of them when there are fewer than asked: every pair of 0..450 counted directly
    every = [(a, b) for a in range(451) for b in range(451) if a % 100 + b % 100 == 99]
    assert sorted(strata.carry_boundary_pairs(99, 450, 100, 100_000, seed=0)) == every
    # operands of 3 tokens: drawn rather than listed, still distinct and in range
    big = strata.carry_boundary_pairs(100, 999_999, 100, 500, seed=0)
    assert len(set(big)) == 500 and all(a % 100 + b % 100 == 100 and max(a, b) <= 999_999
                                        for a, b in big)
    # one-token operands too small to reach the boundary: none
    assert strata.carry_boundary_pairs(99, 40, 100, 10, seed=0) == []


def test_tally():
    s1, s2 = Stratum(1, 1, False), Stratum(2, 2, True)
    assert strata.tally([s2, s1, s2], [True, False, False]) == {s1: (0, 1), s2: (1, 2)}
