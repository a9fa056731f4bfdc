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
    assert strata.learned(0.995, 0.99, 1.0)
    assert not strata.learned(0.995, 0.99, 0.95)   # one edge case wrong
    assert not strata.learned(0.995, 0.98, 1.0)    # a weak stratum
    assert not strata.learned(0.985, 0.99, 1.0)    # uniform pairs below 99%


def test_tally():
    s1, s2 = Stratum(1, 1, False), Stratum(2, 2, True)
    assert strata.tally([s2, s1, s2], [True, False, False]) == {s1: (0, 1), s2: (1, 2)}
