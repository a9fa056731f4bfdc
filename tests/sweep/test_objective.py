"""What pruning and the phase 3 search compare (no Ray)."""

import itertools

from addray.sweep.objective import above_threshold, pruning_score, search_score


def _m(em, params=1000, tok=0.0, worst=None, edge=1.0, boundary=1.0):
    return {"exact_match": em, "params": params, "token_accuracy": tok,
            "worst_stratum": em if worst is None else worst, "edge_cases": edge,
            "carry_boundary": boundary}


def test_above_threshold_always_beats_below():
    sizes = [10, 1_000, 9_999, 250_000, 10**9]
    below = [0.0, 0.5, 0.9899, 0.98999999]
    for small, big in itertools.product(sizes, sizes):
        for em in below:
            for metric in ("exact_match", "worst_stratum"):
                above = search_score(_m(0.99, big), 0.99, metric)
                assert above > search_score(_m(em, small, 1.0), 0.99, metric)


def test_fewer_parameters_win_above_threshold():
    scores = [search_score(_m(0.995, n), 0.99, "exact_match")
              for n in (100, 5_000, 9_991, 10_000, 163_367, 10**8)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    # above the threshold, accuracy no longer matters: size decides
    assert search_score(_m(0.99, 5_000), 0.99, "exact_match") > \
        search_score(_m(1.0, 5_001), 0.99, "exact_match")


def test_below_threshold_higher_accuracy_wins_and_token_accuracy_breaks_ties():
    assert search_score(_m(0.5, 10**6), 0.99, "exact_match") > \
        search_score(_m(0.4, 10), 0.99, "exact_match")
    assert pruning_score(_m(0.3, tok=0.9), "exact_match") > \
        pruning_score(_m(0.3, tok=0.1), "exact_match")
    assert pruning_score(_m(0.3001, tok=0.0), "exact_match") > \
        pruning_score(_m(0.3, tok=1.0), "exact_match")


def test_the_strict_goal_counts_only_models_that_would_pass_verify():
    # 99.5% on uniform pairs but a weak stratum, or a wrong edge case: below the threshold
    assert above_threshold(_m(0.995, worst=0.99), 0.99, "worst_stratum")
    assert not above_threshold(_m(0.995, worst=0.7), 0.99, "worst_stratum")
    assert not above_threshold(_m(0.995, edge=0.95), 0.99, "worst_stratum")
    # ... or one pair in eight wrong where the low tokens sum to 99 or 100
    assert not above_threshold(_m(0.995, boundary=0.875), 0.99, "worst_stratum")
    unmeasured = {k: v for k, v in _m(0.995).items() if k != "carry_boundary"}
    assert not above_threshold(unmeasured, 0.99, "worst_stratum")
    assert above_threshold(_m(0.995, worst=0.7), 0.99, "exact_match")
    weak = search_score(_m(0.995, params=100, worst=0.7), 0.99, "worst_stratum")
    assert weak < 1 < search_score(_m(0.995, params=10**6), 0.99, "worst_stratum")
