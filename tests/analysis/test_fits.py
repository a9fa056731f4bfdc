"""The logistic fit of exact match against size, on synthetic data from known curves."""

import numpy as np
import pytest

from addray.analysis.fits import FitError, fit_logistic, logistic


def _synthetic(k=3.0, x50=5.0, ceiling=1.0, noise=0.03, seeds=3, seed=0, sizes=None):
    rng = np.random.default_rng(seed)
    params = np.repeat(np.logspace(4, 7, 8) if sizes is None else sizes, seeds)
    acc = logistic(np.log10(params), k, x50, ceiling) + rng.normal(0, noise, len(params))
    return params, acc  # unclipped: clipping at 0 and 1 would itself flatten the curve


@pytest.mark.slow
def test_fit_recovers_known_n50_and_slope():
    # over 10 synthetic data sets: estimates centre on the truth and the 95% bootstrap
    # intervals cover it in most of them
    ks, x50s, covered_k, covered_n50 = [], [], 0, 0
    for seed in range(10):
        params, acc = _synthetic(seed=seed)
        fit = fit_logistic(params, acc, n_boot=100, seed=seed)
        ks.append(fit.k)
        x50s.append(np.log10(fit.n50))
        covered_k += fit.ci["k"][0] <= 3.0 <= fit.ci["k"][1]
        covered_n50 += fit.ci["n50"][0] <= 1e5 <= fit.ci["n50"][1]
    assert np.mean(ks) == pytest.approx(3.0, rel=0.05)
    assert np.mean(x50s) == pytest.approx(5.0, abs=0.02)
    assert covered_k >= 7 and covered_n50 >= 7
    # N99 follows from the curve: log10 N99 = log10 N50 + ln(99) / k
    assert np.log10(fit.n99) == pytest.approx(x50s[-1] + np.log(99) / ks[-1], abs=1e-6)
    assert fit.why_not(0.5) is None  # measured sizes lie on both sides of 50%


def test_censored_points_recover_n50_within_the_interval():
    # the three largest models were cut short at low accuracy (lower bounds): counted as
    # results they would drag the curve down; as lower bounds they do not
    params, acc = _synthetic(noise=0.01)
    extra_p, extra_a = np.array([3e6, 5e6, 1e7]), np.array([0.05, 0.1, 0.02])
    p, a = np.concatenate([params, extra_p]), np.concatenate([acc, extra_a])
    cut = np.r_[np.zeros(len(params), bool), np.ones(3, bool)]
    honest = fit_logistic(p, a, censored=cut, n_boot=100)
    assert honest.ci["n50"][0] <= 1e5 <= honest.ci["n50"][1]
    assert abs(np.log10(honest.n50) - 5.0) < 0.1
    with pytest.raises(FitError, match="misses its points"):
        fit_logistic(p, a, n_boot=0)  # as results, they contradict any one S-curve


def test_fit_with_ceiling_recovers_it_and_n99_unreachable():
    params, acc = _synthetic(ceiling=0.9, noise=0.02)
    fit = fit_logistic(params, acc, ceiling=True, n_boot=50)
    assert fit.ceiling == pytest.approx(0.9, abs=0.04)
    assert fit.n99 == np.inf  # a ceiling below 99% never reaches it
    assert fit.why_not(0.99).startswith("no size that ran its budget reaches 99%")


@pytest.mark.parametrize("params,acc,cut,message", [
    ([1e4, 1e4, 1e5], [0.1, 0.2, 0.9], None, "needs at least 3 distinct model sizes; got 2"),
    ([1e4, 1e5, 1e6, 1e7], [0.0, 0.01, 0.0, 0.02], None, "no model reached 5% exact match"),
    ([1e4, 1e5, 1e6], [0.1, 0.5, 0.9], [False, True, True], "fewer than two sizes ran"),
    # accuracy falls with size: no S-curve in size describes it
    ([1e4, 1e5, 1e6, 1e7] * 2, [0.9, 0.1, 0.9, 0.1] * 2, None, "misses its points"),
    # a cut trial at 30% where two finished ones of its size scored 0%
    ([1e4, 1e5, 1e6, 1e7] * 2 + [1e4], [0.0, 0.05, 0.5, 0.95] * 2 + [0.3], [0] * 8 + [1],
     "passes 0.30 below a lower bound"),
])
def test_fit_refuses_data_that_cannot_support_it(params, acc, cut, message):
    with pytest.raises(FitError, match=message):
        fit_logistic(params, acc, censored=None if cut is None else np.array(cut, bool),
                     n_boot=0)


def test_levels_outside_the_measured_sizes_are_not_quoted():
    # every size above 99%: N50 and N99 lie below the smallest, and the fit says so
    params, acc = _synthetic(x50=3.0, sizes=np.logspace(4, 6, 5), noise=0.001)
    fit = fit_logistic(params, np.clip(acc, 0, 1), n_boot=0)
    assert fit.why_not(0.5) == "every size that ran its budget reaches 50%: below 10,000"


def test_seeds_scattered_around_the_curve_are_not_a_misfit():
    # the middle of a rise spreads over seeds by tens of points (the laptop study: 36-89%
    # at 5.2K); the curve describes the sizes' means, which lie on it
    sizes = np.logspace(3.3, 4.5, 5)
    mean = logistic(np.log10(sizes), 6.0, 3.6)
    params = np.repeat(sizes, 3)
    acc = np.repeat(mean, 3) + np.tile([-0.25, 0.0, 0.25], 5) * np.repeat(
        np.minimum(mean, 1 - mean) / 0.5, 3)
    fit = fit_logistic(params, acc, n_boot=20)
    assert fit.rms < 0.02
    assert np.log10(fit.n50) == pytest.approx(3.6, abs=0.05)
    # a curve that misses the means is still refused
    with pytest.raises(FitError, match="misses its points"):
        fit_logistic(params, np.repeat([0.9, 0.1, 0.9, 0.1, 0.9], 3), n_boot=0)
