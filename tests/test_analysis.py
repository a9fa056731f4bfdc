import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from addray import analysis as an
from addray import study_files as sf


def _synthetic(k=3.0, x50=5.0, ceiling=1.0, noise=0.03, seeds=3, seed=0):
    rng = np.random.default_rng(seed)
    params = np.repeat(np.logspace(4, 7, 8), seeds)
    acc = an.logistic(np.log10(params), k, x50, ceiling) + rng.normal(0, noise, len(params))
    return params, acc  # unclipped: clipping at 0 and 1 would itself flatten the curve


def test_fit_recovers_known_n50_and_slope():
    # over 10 synthetic data sets: estimates centre on the truth and the 95% bootstrap
    # intervals cover it in most of them
    ks, x50s, covered_k, covered_n50 = [], [], 0, 0
    for seed in range(10):
        params, acc = _synthetic(seed=seed)
        fit = an.fit_logistic(params, acc, n_boot=100, seed=seed)
        ks.append(fit.k)
        x50s.append(np.log10(fit.n50))
        covered_k += fit.ci["k"][0] <= 3.0 <= fit.ci["k"][1]
        covered_n50 += fit.ci["n50"][0] <= 1e5 <= fit.ci["n50"][1]
    assert np.mean(ks) == pytest.approx(3.0, rel=0.05)
    assert np.mean(x50s) == pytest.approx(5.0, abs=0.02)
    assert covered_k >= 7 and covered_n50 >= 7
    # N99 follows from the curve: log10 N99 = log10 N50 + ln(99) / k
    assert np.log10(fit.n99) == pytest.approx(x50s[-1] + np.log(99) / ks[-1], abs=1e-6)


def test_fit_with_ceiling_recovers_it_and_n99_unreachable():
    params, acc = _synthetic(ceiling=0.9, noise=0.02)
    fit = an.fit_logistic(params, acc, ceiling=True, n_boot=50)
    assert fit.ceiling == pytest.approx(0.9, abs=0.04)
    assert fit.n99 == np.inf  # a ceiling below 99% never reaches it


def test_fit_refuses_too_few_sizes():
    with pytest.raises(an.AnalysisError, match="needs at least 3 distinct model sizes; got 2"):
        an.fit_logistic([1e4, 1e4, 1e5], [0.1, 0.2, 0.9])
    with pytest.raises(an.AnalysisError, match="at least 4"):
        an.fit_logistic([1e4, 1e5, 1e6], [0.1, 0.5, 0.9], ceiling=True)


def test_pruned_trials_count_as_lower_bounds():
    params, acc = _synthetic(noise=0.01)
    # big models pruned early with low accuracy so far: lower bounds, not results
    extra_p = np.array([3e6, 5e6, 1e7])
    extra_a = np.array([0.05, 0.1, 0.02])
    p = np.concatenate([params, extra_p])
    a = np.concatenate([acc, extra_a])
    censored = np.r_[np.zeros(len(params), bool), np.ones(3, bool)]
    honest = an.fit_logistic(p, a, censored=censored, n_boot=0)
    naive = an.fit_logistic(p, a, n_boot=0)
    assert abs(np.log10(honest.n50) - 5.0) < 0.1
    # treating them as final results drags the curve down at large N
    assert naive.predict(np.array([1e7]))[0] < honest.predict(np.array([1e7]))[0] - 0.05


def _trials(rows):
    return pd.DataFrame(rows)


def test_width_vs_depth_against_seed_spread():
    rows = []
    for seed, (w, d) in enumerate([(0.90, 0.70), (0.92, 0.72), (0.91, 0.69)]):
        rows.append({"study": "p2", "trial_id": f"w{seed}", "config": "wide", "lr": 1e-3,
                     "params": 2e6, "d_model": 512, "n_layers": 2, "final_exact_match": w,
                     "best_exact_match": w, "wall_seconds": 1})
        rows.append({"study": "p2", "trial_id": f"d{seed}", "config": "deep", "lr": 1e-3,
                     "params": 1e6, "d_model": 128, "n_layers": 8, "final_exact_match": d,
                     "best_exact_match": d, "wall_seconds": 1})
    wd = an.width_vs_depth(_trials(rows))
    [r] = wd.to_dict("records")
    assert r["wide"] == "wide" and r["deep"] == "deep" and r["param_ratio"] == 2.0
    assert r["difference"] == pytest.approx(0.2067, abs=1e-3)
    assert r["verdict"] == "wider better, beyond seed spread"
    close = _trials([{**x, "final_exact_match": 0.8 + 0.05 * (i % 3 - 1)}
                     for i, x in enumerate(rows)])
    assert an.width_vs_depth(close)["verdict"].item() == "within seed-to-seed spread"


def _write_study(d, rows, state="finished", curves=()):
    d.mkdir(parents=True)
    sf.write_study(d, {"study": d.name, "state": state, "command": "python sweeps/x.py"})
    sf.write_csv(d / "trials.csv", sf.TRIAL_COLUMNS, rows)
    sf.write_csv(d / "curves.csv", sf.CURVE_COLUMNS, list(curves))


def _row(i, **kw):
    return {"trial_id": f"t{i}", "config": "phase1_lower", "status": "completed",
            "params": 163367, "seed": 0, "lr": 1e-3, "steps": 100, "final_exact_match": 0.5,
            "best_exact_match": 0.5, "wall_seconds": 10, "cpus": 1, "gpus": 0,
            "d_model": 64, "n_layers": 3, **kw}


def test_load_marks_partial_studies_and_running_trials(tmp_path):
    curves = [{"trial_id": "t9", "config": "phase1_tiny", "seed": 0, "lr": 1e-3, "step": s,
               "exact_match": 0.1 * s / 10, "params": 32167} for s in (10, 20)]
    _write_study(tmp_path / "a", [_row(1)], state="interrupted", curves=curves)
    _write_study(tmp_path / "b", [_row(2)])
    res = an.load_results(tmp_path)
    assert res.studies["a"]["partial"] and not res.studies["b"]["partial"]
    running = res.trials[res.trials["status"] == "running"]
    assert running["trial_id"].tolist() == ["t9"] and running["steps"].item() == 20


@pytest.mark.parametrize("setup,message", [
    (lambda d: None, "no studies found"),
    (lambda d: (d / "notes.txt").write_text("hello"), "no studies found"),
    (lambda d: (d / "s").mkdir() or (d / "s" / "trials.csv").write_text("a,b\n1,2\n"),
     "not an addray results file"),
    (lambda d: _write_study(d / "s", [_row(1), _row(2)]) or (d / "s" / "trials.csv").write_text(
        (d / "s" / "trials.csv").read_text()[:-40]), "truncated or corrupt"),
    (lambda d: (d / "s").mkdir() or (d / "s" / "study.json").write_text("{oops"),
     "not valid JSON"),
])
def test_bad_results_folders(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(an.AnalysisError, match=message):
        an.load_results(tmp_path)


def test_missing_folder():
    with pytest.raises(an.AnalysisError, match="no such folder"):
        an.load_results("/nonexistent/results")


def test_learning_rate_edge_flag():
    rows = [_row(i, lr=lr, final_exact_match=em) for i, (lr, em) in
            enumerate([(1e-4, 0.1), (1e-3, 0.5), (3e-3, 0.9)])]
    lr = an.learning_rates(_trials([{**r, "study": "s"} for r in rows]))
    assert lr["best_lr"].item() == 3e-3 and bool(lr["at_edge"].item())


def test_analysis_side_never_imports_ray():
    code = ("import sys, addray.analysis, addray.report; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('ray', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == []


def test_fit_refuses_data_without_signal():
    with pytest.raises(an.AnalysisError, match="no model reached 5% exact match"):
        an.fit_logistic([1e4, 1e5, 1e6, 1e7], [0.0, 0.01, 0.0, 0.02])


def test_pareto_frontier_and_smallest_above():
    import pandas as pd

    from addray.analysis import pareto_frontier, smallest_above

    t = pd.DataFrame({"params": [100, 200, 300, 300, 400, 500],
                      "final_exact_match": [0.5, 0.4, 0.9, 0.95, 0.99, 0.99],
                      "status": ["completed", "completed", "completed", "pruned",
                                 "completed", "running"]})
    front = pareto_frontier(t)
    assert front["params"].tolist() == [100, 300, 400]
    assert front["final_exact_match"].tolist() == [0.5, 0.95, 0.99]
    assert smallest_above(t, 0.99)["params"] == 400  # the running one is not a result
    assert smallest_above(t, 0.999) is None


def test_a_copied_study_is_kept_apart(tmp_path):
    from addray import study_files as sf
    from addray.analysis import load_results

    for where in (tmp_path / "s", tmp_path / "reference" / "s"):
        where.mkdir(parents=True)
        sf.write_study(where, {"study": "s", "state": "finished"})
        sf.write_csv(where / "trials.csv", sf.TRIAL_COLUMNS,
                     [{"study": "s", "trial_id": "t1", "config": "c", "status": "completed",
                       "params": 10}])
    res = load_results(tmp_path)
    assert sorted(res.studies) == ["reference-s", "s"]
    assert res.trials.groupby("study").size().to_dict() == {"reference-s": 1, "s": 1}
