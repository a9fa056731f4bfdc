"""Comparisons: best learning rates, width vs depth over seeds, a search's frontier."""

import pandas as pd
import pytest

from addray.analysis import compare
from tests.conftest import trial_row as row


def _t(rows):
    return pd.DataFrame([{"study": "s", **r} for r in rows])


def test_width_vs_depth_is_a_test_over_seeds():
    rows = []
    for seed, (w, d) in enumerate([(0.90, 0.70), (0.92, 0.72), (0.91, 0.69)]):
        rows.append(row(f"w{seed}", config="wide", params=2e6, d_model=512, n_layers=2,
                        final_exact_match=w))
        rows.append(row(f"d{seed}", config="deep", params=1e6, d_model=128, n_layers=8,
                        final_exact_match=d))
    [r] = compare.width_vs_depth(_t(rows)).to_dict("records")
    assert r["wide"] == "wide" and r["deep"] == "deep" and r["param_ratio"] == 2.0
    assert r["difference"] == pytest.approx(0.2067, abs=1e-3)
    assert r["verdict"] == "wider better" and r["p_value"] < 0.01
    close = _t([{**x, "final_exact_match": 0.8 + 0.05 * (i % 3 - 1)} for i, x in enumerate(rows)])
    [c] = compare.width_vs_depth(close).to_dict("records")
    assert c["verdict"] == "no clear difference" and c["p_value"] > 0.05
    one = _t(rows[:2])
    assert compare.width_vs_depth(one)["verdict"].item() == "one seed: spread unknown"


def test_best_learning_rate_is_one_that_ran_its_budget():
    # lr 1e-2 scored highest but was pruned (a lower bound): the point comes from 3e-3
    rows = [row(1, lr=1e-3, final_exact_match=0.5), row(2, lr=3e-3, final_exact_match=0.8),
            row(3, lr=1e-2, final_exact_match=0.9, status="pruned")]
    best = compare.best_lrs(_t(rows))
    assert best["lr"].item() == 3e-3 and best["censored"].item() == 0
    lr = compare.learning_rates(_t(rows))
    assert lr["best_lr"].item() == 3e-3 and not lr["at_edge"].item()
    assert lr["by_lr"].item()[1e-2] == (0.9, 1, 1)


def test_learning_rate_edge_flag():
    rows = [row(i, lr=lr, final_exact_match=em) for i, (lr, em) in
            enumerate([(1e-4, 0.1), (1e-3, 0.5), (3e-3, 0.9)])]
    lr = compare.learning_rates(_t(rows))
    assert lr["best_lr"].item() == 3e-3 and bool(lr["at_edge"].item())


def test_two_rates_are_not_warned_about_their_edge():
    # of two rates one is always at an edge: the warning would say nothing
    rows = [row(i, lr=lr, final_exact_match=em) for i, (lr, em) in
            enumerate([(1e-3, 0.5), (3e-3, 0.9)])]
    lr = compare.learning_rates(_t(rows))
    assert lr["best_lr"].item() == 3e-3 and not lr["at_edge"].item()
    assert lr["why"].item() == ""  # the same seeds at both rates: the means decide


def test_pareto_frontier_and_smallest_above():
    t = pd.DataFrame({"params": [100, 200, 300, 300, 400, 500],
                      "final_exact_match": [0.5, 0.4, 0.9, 0.95, 0.99, 0.99],
                      "learned": ["False"] * 4 + ["False", "True"],
                      "status": ["completed", "completed", "completed", "pruned",
                                 "completed", "completed"]})
    front = compare.pareto_frontier(t)
    assert front["params"].tolist() == [100, 300, 400]
    assert front["final_exact_match"].tolist() == [0.5, 0.95, 0.99]
    assert compare.smallest_above(t, 0.99)["params"] == 400
    assert compare.smallest_above(t, 0.99, learned_only=True)["params"] == 500
    assert compare.smallest_above(t, 0.999) is None


def test_smallest_learned_on_every_seed():
    def rows(study, config, params, learned, lr=0.01):
        return [{"study": study, "config": config, "params": params, "lr": lr, "seed": s,
                 "status": "completed", "learned": won} for s, won in enumerate(learned)]
    t = pd.DataFrame(rows("a", "tiny", 1500, [True, True, False])  # 2 of 3: not everywhere
                     + rows("b", "tiny", 1500, [True, True])  # every seed, but only 2
                     # three learning rates of one seed each are not three seeds
                     + rows("c", "small", 1700, [True]) + rows("c", "small", 1700, [True], 0.02)
                     + rows("c", "small", 1700, [True], 0.03)
                     + rows("d", "mid", 1888, [True, True, True])
                     + rows("e", "big", 7879, [True, True, True]))
    best = compare.smallest_learned_on_every_seed(t)
    assert best == {"study": "d", "config": "mid", "params": 1888, "seeds": 3}
    assert compare.smallest_learned_on_every_seed(t, min_seeds=2)["params"] == 1500
    assert compare.smallest_learned_on_every_seed(t[t["study"].isin(["a", "b"])]) is None


def test_rates_are_compared_on_the_seeds_they_share():
    # a screened study: lr 1e-2 ran seed 0 only (0.70), lr 3e-3 was chosen on seed 0 (0.80)
    # and its seeds 1 and 2 came out lower; a mean over unequal seeds would prefer 1e-2
    rows = [row(1, lr=1e-2, seed=0, final_exact_match=0.70),
            row(2, lr=3e-3, seed=0, final_exact_match=0.80),
            row(3, lr=3e-3, seed=1, final_exact_match=0.50),
            row(4, lr=3e-3, seed=2, final_exact_match=0.50),
            # its never-run seeds: rows without a result, not censored points
            row(5, lr=1e-2, seed=1, final_exact_match=None, status="pruned", steps=0),
            row(6, lr=1e-2, seed=2, final_exact_match=None, status="pruned", steps=0)]
    best = compare.best_lrs(_t(rows))
    assert best["lr"].item() == 3e-3 and best["seeds"].item() == 3
    assert best["exact_match"].item() == pytest.approx(0.6)
    assert compare.learning_rates(_t(rows))["by_lr"].item()[1e-2] == (0.70, 0, 1)
    # the reason in one line: the seed both rates ran, and what each scored there
    assert compare.learning_rates(_t(rows))["why"].item() == (
        "on seed 0, run at every rate: 0.003: 80.00% against 0.01: 70.00%")
