import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image

from addray import files
from addray import study_files as sf
from addray.analysis import report
from addray.analysis.doc import count
from addray.analysis.fits import logistic


def _png_ok(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(path)
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 400
    assert pixels.std() > 0.01  # not a blank canvas


def test_report_from_a_real_smoke_sweep(smoke_results, tmp_path):
    results, _ = smoke_results
    md_path, summary = report.build(results, out=tmp_path, fmt="html")
    md = md_path.read_text()
    for section in report.SECTIONS:
        assert f"## {section}" in md, section
    for png in ("fit.png", "curves_phase1.png", "curves_phase2.png"):
        _png_ok(tmp_path / png)
        assert f"]({png})" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count("<table>") >= 4
    # the HTML renders the report's markdown; smoke studies are labelled, never audited
    assert "**" not in html and "<strong>phase1</strong>" in html and "<li>" in html
    assert "finished (smoke test)" in md
    assert "Smoke studies (phase1, phase2) are left out" in md
    assert "is below the claimed" not in md and "is above the claimed" not in md
    if "| phase2 |" in md.split("## Width vs depth")[1].split("## ")[0]:
        _png_ok(tmp_path / "width_depth.png")
    # every trial's numbers appear as trials.csv has them
    for study in ("phase1", "phase2"):
        for r in sf.read_trials(results / study):
            line = next(ln for ln in md.splitlines() if ln.startswith(f"| {r['config']} |"))
            assert f"{float(r['final_exact_match']):.2%}" in line
            params = int(r["params"])
            shown = f"{params / 1e6:.2f}M" if params >= 1e6 else f"{params / 1e3:.1f}K"
            assert shown in line
    assert any("trials, best exact match" in s for s in summary)


def _synthetic_study(root):
    """A study over many sizes, a learning-rate grid and a width/depth pair."""
    d = root / "synth"
    d.mkdir(parents=True)
    sf.write_study(d, {"study": "synth", "state": "finished", "command": "python sweeps/x.py"})
    rows, curves, rng = [], [], np.random.default_rng(0)
    sizes = {"phase1_tiny": (32, 2, 32_167), "phase1_lower": (64, 3, 163_367),
             "phase2_deep": (128, 8, 1_612_903), "phase2_wide": (512, 2, 6_411_367)}
    i = 0
    for name, (d_model, layers, params) in sizes.items():
        for lr in (1e-4, 1e-3, 3e-3):  # three rates: the best at the grid's edge
            for seed in range(2):
                em = float(np.clip(logistic(np.log10(params), 2.5, 5.0) - (lr < 3e-3) * 0.1
                                   + rng.normal(0, 0.01), 0, 1))
                rows.append({"study": "synth", "trial_id": f"t{i}", "config": name,
                             "d_model": d_model, "n_layers": layers, "params": params,
                             "seed": seed, "lr": lr, "status": "completed", "steps": 1000,
                             "max_steps": 1000, "best_exact_match": em,
                             "final_exact_match": em, "wall_seconds": 60, "gpus": 0,
                             "cpus": 2})
                curves += [{"study": "synth", "trial_id": f"t{i}", "config": name,
                            "seed": seed, "lr": lr, "step": s, "exact_match": em * s / 1000}
                           for s in (500, 1000)]
                i += 1
    files.write_csv(sf.trials_csv(d), sf.TRIAL_COLUMNS, rows)
    files.write_csv(d / "curves.csv", sf.CURVE_COLUMNS, curves)
    return root


@pytest.mark.slow
def test_report_sections_computed_from_data(tmp_path):
    root = _synthetic_study(tmp_path / "results")
    md_path, summary = report.build(root)
    md = md_path.read_text()
    # 8 trials at the best lr (3e-3) of each config, drawn with N50 = 10^5
    assert "Logistic fit in log10(parameters) over 8 trials" in md
    fit_line = next(ln for ln in md.splitlines() if ln.startswith("Logistic fit"))
    lo, hi = fit_line.split("N50 = ")[1].split("(95% CI ")[1].split(")")[0].split("–")
    assert float(lo.rstrip("K")) <= 100.0 <= float(hi.rstrip("K"))
    # N99 lies above every measured size (the largest is at 97%): not quoted as a number
    assert "N99: not determined (no size that ran its budget reaches 99%: above 6,411,367)" \
        in fit_line
    # best lr is 3e-3, the top of the grid: the report warns, and plots every rate
    assert md.count("best at the edge of the grid") == 4
    _png_ok(root / "learning_rates.png")
    # audit: counted parameters against the claims, and the wide/deep size confound
    assert "phase1_lower: parameter count 253.0K does not hold: counted 163,367 (-35%)" in md
    assert "phase2_wide has 4.0x the parameters of phase2_deep" in md
    assert "the reference spends" in md and "CPU-core-hours" in md
    assert any(s.startswith("fit: N50 =") for s in summary)
    # width vs depth over two seeds: a Welch test, with its verdict, and depth on an axis
    assert "| synth | phase2_wide | phase2_deep | 3.98x |" in md
    _png_ok(root / "width_depth.png")


def test_no_size_curve_across_shapes_of_one_size(tmp_path):
    d = tmp_path / "wd"
    d.mkdir()
    sf.write_study(d, {"study": "wd", "state": "finished"})
    rows = [{"trial_id": f"t{layers}{seed}", "config": f"shape_{layers}l", "d_model": 64 // layers,
             "n_layers": layers, "params": 44_000 + layers, "seed": seed, "lr": 1e-3,
             "status": "completed", "steps": 10, "max_steps": 10, "final_exact_match": 0.9,
             "best_exact_match": 0.9} for layers in (2, 4) for seed in (0, 1)]
    files.write_csv(sf.trials_csv(d), sf.TRIAL_COLUMNS, rows)
    md = report.build(tmp_path, out=tmp_path / "out")[0].read_text()
    assert "No size curve: the sizes here span 1.00x" in md and "Logistic fit" not in md
    _png_ok(tmp_path / "out" / "width_depth.png")


@pytest.mark.slow
@pytest.mark.parametrize("setup,message", [
    (lambda d: None, "no studies found"),
    (lambda d: (d / "readme.txt").write_text("not results"), "no studies found"),
    (lambda d: (d / "s").mkdir() or (d / "s" / "trials.csv").write_text(
        "study,trial_id,config,status,params\nx,t1,c,compl\nx,t2,c,completed,100\n"),
     "truncated or corrupt"),
])
def test_bad_input_is_one_line_and_non_zero(tmp_path, setup, message):
    setup(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "addray.report", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert message in proc.stderr and str(tmp_path) in proc.stderr


def _search_study(root, threshold=0.99):
    """A search study whose smallest model at >= 99% has 5,000 parameters, with a
    confirmation study of two more seeds; and a grid study beside it."""
    import json

    d = root / "search"
    d.mkdir(parents=True)
    sf.write_study(d, {"study": "search", "state": "finished", "kind": "search",
                       "threshold": threshold, "confirm_study": "search-seeds"})
    points = [(2_000, 0.40, "completed"), (3_000, 0.95, "completed"),
              (5_000, 0.993, "completed"), (7_000, 0.30, "pruned"), (9_000, 0.999, "completed"),
              (20_000, 0.9995, "early_stopped"), (4_000, 0.10, "pruned")]
    rows = [{"study": "search", "trial_id": f"s{i}", "config": f"m{params}", "params": params,
             "d_model": 16, "n_layers": 1, "seed": 0, "lr": 0.01, "batch_size": 256,
             "status": status, "steps": 1000, "max_steps": 1000, "final_exact_match": em,
             "best_exact_match": em, "wall_seconds": 10, "cpus": 1, "gpus": 0,
             "suggestion": json.dumps({"d_model": 16})}
            for i, (params, em, status) in enumerate(points)]
    files.write_csv(sf.trials_csv(d), sf.TRIAL_COLUMNS, rows)
    c = root / "search-seeds"
    c.mkdir()
    sf.write_study(c, {"study": "search-seeds", "state": "finished"})
    files.write_csv(c / "trials.csv", sf.TRIAL_COLUMNS, [
        {**rows[2], "study": "search-seeds", "trial_id": f"c{s}", "config": "smallest",
         "seed": s, "final_exact_match": em} for s, em in ((1, 0.995), (2, 0.97))])
    return root


@pytest.mark.slow
def test_search_section_frontier_smallest_and_seeds(tmp_path):
    root = _synthetic_study(tmp_path / "results")
    _search_study(root)
    md_path, summary = report.build(root, out=tmp_path / "out")
    md = md_path.read_text()
    section = md.split("## Smallest model that adds")[1].split("\n## ")[0]
    _png_ok(tmp_path / "out" / "search.png")
    # the frontier over every stage: each more accurate than every smaller trial; pruned
    # 7K/4K are not on it, and at 5,000 the confirmation's better seed (99.5%) replaces
    # the search's trial (99.3%)
    front = [ln.split(" | ")[1] for ln in section.splitlines() if ln.startswith("| search")]
    assert front == ["m2000", "m3000", "smallest", "m9000", "m20000"]
    assert ("m5000 with 5,000 parameters, >= 99%, at 99.30%; 2 of 3 seeds at >= 99% uniform "
            "exact match (min 97.00%)") in section
    assert "is 50x this" in section
    # the search's trials stay out of the size fit of the grid study
    assert "Logistic fit in log10(parameters) over 8 trials" in md
    assert any("m5000 with 5,000 parameters" in s for s in summary)


@pytest.mark.slow
def test_later_stages_in_the_search_folder_join_the_frontier(tmp_path):
    root = _synthetic_study(tmp_path / "results")
    _search_study(root)
    # a later stage kept inside the search's folder: a 1,500-parameter model trained
    # longer, learned on 2 of its 3 seeds
    stage = root / "search" / "verification" / "tiny-long"
    stage.mkdir(parents=True)
    sf.write_study(stage, {"study": "tiny-long", "state": "finished", "kind": "grid"})
    files.write_csv(stage / "trials.csv", sf.TRIAL_COLUMNS, [
        {"study": "tiny-long", "trial_id": f"t{s}", "config": "tiny", "params": 1500,
         "d_model": 8, "n_layers": 2, "seed": s, "lr": 0.01, "batch_size": 128,
         "status": "completed", "steps": 9000, "max_steps": 9000, "final_exact_match": em,
         "best_exact_match": em, "learned": won, "wall_seconds": 10, "cpus": 1, "gpus": 0}
        for s, em, won in ((0, 0.999, True), (1, 0.9995, True), (2, 0.97, False))])
    md_path, summary = report.build(root, out=tmp_path / "out")
    md = md_path.read_text()
    section = md.split("## Smallest model that adds")[1].split("\n## ")[0]
    # the frontier now starts at the later stage's model, before the search's
    front = [ln.split(" | ")[1:3] for ln in section.splitlines() if ln.startswith("| ")
             and ln.split(" | ")[0] in ("| search", "| tiny-long")]
    assert front[0] == ["tiny", "1,500"] and ["m2000", "2,000"] not in front
    assert ("tiny-long (stage): tiny (1,500 parameters) learned on its held-out set on 2 "
            "of 3 seeds, uniform 97.00%-99.95%.") in section
    assert "over 3 stage(s) of 1 search(es)" in section
    # 2 of 3 seeds is not every seed: no headline model
    assert "No config was learned on every seed of a stage (3 or more seeds)." in section
    # still out of the grid study's size fit
    assert "Logistic fit in log10(parameters) over 8 trials" in md
    # the search's folder alone is reported with its later stage
    alone = report.build(root / "search", out=tmp_path / "alone")[0].read_text()
    assert "tiny-long (stage): tiny (1,500 parameters)" in alone
    # a stage whose 1,800-parameter config learned on all three seeds is the headline
    rows = files.read_csv(stage / "trials.csv")
    files.write_csv(stage / "trials.csv", sf.TRIAL_COLUMNS, rows + [
        {**rows[0], "trial_id": f"u{s}", "config": "tiny18", "params": 1800, "seed": s,
         "learned": True} for s in range(3)])
    again = report.build(root / "search", out=tmp_path / "again")[0].read_text()
    assert ("Smallest config learned on every seed of a stage (3 or more seeds, each learned "
            "on its held-out set): tiny18 in tiny-long, 1,800 parameters, 3 of 3 seeds.") in again


def test_search_section_without_a_model_at_the_threshold(tmp_path):
    root = _search_study(tmp_path / "results", threshold=1.0)
    md = report.build(root)[0].read_text()
    assert "search: no trial >= 100%." in md
    assert "No fixed-config study (phase 1, phase 2) in these results." in md


@pytest.mark.parametrize("n,shown", [(12, "12"), (32_167, "32.2K"), (4_791_911, "4.79M"),
                                     (2.5e14, "2.5e+14"), (float("inf"), "not reached")])
def test_parameter_counts_are_readable(n, shown):
    # an extrapolated fit bound can be absurdly large: no "253165215.57M"
    assert count(n) == shown


@pytest.mark.parametrize("em,claim,cut,verdict", [
    # a lower bound can only show that a claim is too low, whatever the claim
    (0.0154, 0.0, True, "neither confirms nor refutes the claimed 0.00%"),
    (0.364, 0.915, True, "neither confirms nor refutes the claimed 91.50%"),
    (0.80, 0.376, True, "is above the claimed 37.60%, so the claim is too low"),
    (0.0154, 0.0, False, "matches the claimed 0.00%"),
    (0.9981, 0.7931, False, "is above the claimed 79.31%"),
])
def test_the_audit_treats_every_lower_bound_alike(em, claim, cut, verdict):
    assert verdict in report._claim_line("c", em, claim, "lr 1e-4", cut)


def test_the_report_names_the_trial_the_search_saved(tmp_path):
    # a search at a 95% threshold judges m3000 above it (every stratum >= 95%), though
    # its trainer's "learned" (at 99%) says no: the report names the trial the search
    # saved, not another one by its own rule
    from addray.sweep.objective import search_score

    d = tmp_path / "search"
    d.mkdir()
    sf.write_study(d, {"study": "search", "state": "finished", "kind": "search",
                       "threshold": 0.95, "metric": "worst_stratum"})
    rows = []
    for params, em, worst in ((3_000, 0.97, 0.96), (6_000, 0.996, 0.995)):
        m = {"exact_match": em, "worst_stratum": worst, "edge_cases": 1.0,
             "carry_boundary": 1.0, "token_accuracy": 1.0, "params": params}
        rows.append({"trial_id": f"t{params}", "config": f"m{params}", "params": params,
                     "seed": 0, "lr": 0.01, "status": "completed", "steps": 10,
                     "max_steps": 10, "final_exact_match": em, "best_exact_match": em,
                     "worst_stratum": worst, "learned": worst >= 0.99,
                     "score": search_score(m, 0.95, "worst_stratum")})
    files.write_csv(sf.trials_csv(d), sf.TRIAL_COLUMNS, rows)
    assert sf.best_search_row(sf.read_trials(d))["config"] == "m3000"
    md = report.build(tmp_path, out=tmp_path / "out")[0].read_text()
    assert "search: m3000 with 3,000 parameters" in md


@pytest.mark.slow
def test_the_interval_does_not_depend_on_the_order_trials_ended_in(tmp_path):
    # the same trials, recorded in another order (trials end when they end): the bootstrap
    # resamples the same rows, so the report quotes the same interval
    rng = np.random.default_rng(1)
    rows = [{"trial_id": f"t{n}-{seed}", "config": f"c{n}", "params": n, "seed": seed,
             "lr": 1e-2, "status": "completed", "steps": 10, "max_steps": 10,
             "final_exact_match": float(np.clip(logistic(np.log10(n), 3.0, 3.6)
                                                + rng.normal(0, 0.08), 0, 1)),
             "best_exact_match": 0.5}
            for n in (2000, 3000, 5000, 8000, 30000) for seed in range(3)]
    fits = []
    for i, order in enumerate((rows, rows[::-1])):
        d = tmp_path / f"r{i}" / "s"
        d.mkdir(parents=True)
        sf.write_study(d, {"study": "s", "state": "finished"})
        files.write_csv(sf.trials_csv(d), sf.TRIAL_COLUMNS, order)
        md = report.build(tmp_path / f"r{i}")[0].read_text()
        fits.append(next(ln for ln in md.splitlines() if ln.startswith("Logistic fit")))
    assert "95% CI" in fits[0] and fits[0] == fits[1]
