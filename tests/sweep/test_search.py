"""Phase 3's search driver on CPU: a smoke search end to end, and resume after SIGKILL
with the searcher's history."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from addray import study_files as sf
from addray.core.config import load_config
from addray.sweep.optuna_log import storage_url
from addray.sweep.search import best_row
from tests.conftest import ROOT, kill_tree, rows, wait_for

pytestmark = pytest.mark.ray  # studies run for real: Ray started, scripts run

SCRIPT = ROOT / "sweeps" / "phase3_search.py"
SEARCHED = {"d_model", "n_layers", "n_heads", "d_ff_mult", "learning_rate", "batch_size",
            "warmup_steps", "weight_decay", "dropout"}


def _search(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def _check_row_matches_suggestion(r: dict[str, str]) -> dict:
    sample = json.loads(r["suggestion"])
    assert set(sample) == SEARCHED
    cfg = json.loads(r["resolved_config"])
    assert cfg["model"]["d_model"] == sample["d_model"] == int(r["d_model"])
    assert cfg["model"]["n_layers"] == sample["n_layers"] == int(r["n_layers"])
    assert cfg["model"]["d_ff"] == sample["d_ff_mult"] * sample["d_model"] == int(r["d_ff"])
    assert cfg["training"]["learning_rate"] == sample["learning_rate"] == float(r["lr"])
    assert cfg["training"]["batch_size"] == sample["batch_size"]
    assert cfg["training"]["warmup_steps"] == sample["warmup_steps"]
    assert cfg["optimizer"]["weight_decay"] == sample["weight_decay"]
    assert cfg["model"]["dropout"] == sample["dropout"]
    return sample


def _sigkill_after_two_trials(args: list[str], study: Path) -> None:
    """Start a search and SIGKILL it (and the Ray it started) once 2 trials are recorded."""
    driver = subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(rows(study / "trials.csv")) >= 2, 240, "two finished trials")
    finally:
        kill_tree(driver.pid)


def test_smoke_search_end_to_end(tmp_path):
    proc = _search("--smoke-test", "--results", str(tmp_path), "--confirm-seeds", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = sf.read_trials(tmp_path / "phase3")
    assert len(trials) == 4 and len({r["trial_id"] for r in trials}) == 4
    samples = [_check_row_matches_suggestion(r) for r in trials]
    assert len({json.dumps(s, sort_keys=True) for s in samples}) == 4  # 4 suggestions
    for r in trials:
        assert r["status"] in sf.FINAL_STATUSES and r["score"] != ""
        assert float(r["score"]) < 1  # a smoke budget reaches no model at 99%
    info = sf.read_study(tmp_path / "phase3")
    assert info["kind"] == "search" and info["state"] == "finished"
    # the searcher's history, as optuna-dashboard reads it: every trial, its metric by
    # name at the end and at every evaluation, the searcher's score, pruned as PRUNED
    study = optuna.load_study(study_name="phase3", storage=storage_url(tmp_path / "phase3"))
    assert study.metric_names == [info["metric"]]
    column = {"exact_match": "final_exact_match"}.get(info["metric"], info["metric"])
    curves = sf.read_curves(tmp_path / "phase3")
    by_sample = {json.dumps(t.params, sort_keys=True): t for t in study.trials}
    assert len(by_sample) == 4
    for r in trials:
        t = by_sample[json.dumps(json.loads(r["suggestion"]), sort_keys=True)]
        pruned = r["status"] == "pruned"
        assert t.state == (optuna.trial.TrialState.PRUNED if pruned
                           else optuna.trial.TrialState.COMPLETE)
        assert t.user_attrs["search_score"] == pytest.approx(float(r["score"]))
        assert pruned or t.value == pytest.approx(float(r[column]))
        mine = {int(c["step"]): float(c[info["metric"]]) for c in curves
                if c["trial_id"] == r["trial_id"]}
        assert t.intermediate_values == pytest.approx(mine) and len(mine) >= 1
        assert (t.datetime_complete - t.datetime_start).total_seconds() > 0
    # the best trial's config and weights, and its re-run with another seed
    best = best_row(trials)
    saved = load_config(tmp_path / "phase3" / "best.yaml")
    assert saved.to_dict()["model"] == json.loads(best["resolved_config"])["model"]
    assert (tmp_path / "phase3" / "best.pt").stat().st_size > 0
    seeds = sf.read_trials(tmp_path / "phase3-seeds")
    assert len(seeds) == 1 and seeds[0]["config"] == "phase3-best"
    assert seeds[0]["seed"] == str(int(best["seed"]) + 1)
    assert int(seeds[0]["params"]) == int(best["params"])
    # every seed's model went through verification; a smoke model has not learned
    verified = sf.read_study(tmp_path / "phase3")["verified"]
    assert set(verified) == {"best.pt", f"seed{seeds[0]['seed']}.pt"}
    assert not any(v["learned"] for v in verified.values())
    assert (tmp_path / "phase3" / f"seed{seeds[0]['seed']}.pt").stat().st_size > 0


def test_best_row_prefers_threshold_then_size():
    rows = [{"score": "0.95", "params": "100"}, {"score": "1.2", "params": "9000"},
            {"score": "1.25", "params": "5000"}, {"score": "", "params": "10"}]
    assert best_row(rows)["params"] == "5000"
    assert best_row([{"score": "", "params": "1"}]) is None


def test_bad_search_options(tmp_path):
    (tmp_path / "grid").mkdir()  # a phase 1/2 study, not a search
    sf.write_study(tmp_path / "grid", {"study": "grid", "state": "finished"})
    for args, message in ((["--trials", "0"], "--trials: 0: must be >= 1 and <= 2000"),
                          (["--confirm-seeds", "-1"], "--confirm-seeds: -1: must be >= 0"),
                          (["--space", str(tmp_path / "none.yaml")], "no such search-space"),
                          (["--time-budget", "-5"], "--time-budget: -5: must be >= 0.001"),
                          (["--time-budget", "nan"], "--time-budget: nan: must be >= 0.001"),
                          (["--time-budget", "inf"], "--time-budget: inf: must be >= 0.001"),
                          (["--max-concurrent", "0"], "--max-concurrent: 0: must be >= 1"),
                          (["--study", "grid", "--finish"], "study 'grid' is not a search")):
        proc = _search("--smoke-test", "--results", str(tmp_path), *args, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("concurrent", ["1"])
def test_sigkill_then_resume_keeps_searcher_history(tmp_path, concurrent):
    # one trial at a time, pruning off, and the TPE sampler's random start-up is only 2
    # trials: a searcher restarted from scratch would suggest trial 1's settings again
    args = ["--smoke-test", "--results", str(tmp_path), "--trials", "5", "--max-concurrent",
            concurrent, "--no-prune", "--confirm-seeds", "0"]
    study = tmp_path / "phase3"
    _sigkill_after_two_trials(args, study)
    before = {r["trial_id"]: r for r in sf.read_trials(study)}
    assert 2 <= len(before) < 5, "kill must land after two trials and before the last"
    proc = _search(*args, "--resume")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # a kill during Tune's copy of its state is repaired first (tests/sweep/test_tune_state)
    assert "Failed to restore" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    trials = sf.read_trials(study)
    assert len(trials) == 5 and len({r["trial_id"] for r in trials}) == 5
    for r in trials:
        if r["trial_id"] in before:
            assert r == before[r["trial_id"]]  # finished before the kill: not rerun
    suggestions = [r["suggestion"] for r in trials]
    assert len(set(suggestions)) == 5, "a suggestion was repeated after the resume"
    # the state the resumed searcher saved holds every trial, those before the kill too
    state = sorted((study / "tune").glob("searcher-state-*.pkl"))  # named by start time
    assert len(state) == 2  # the first run's and the resumed run's
    with state[-1].open("rb") as f:
        searcher = pickle.load(f)
    ot_trials = searcher["_ot_study"].trials
    assert len(ot_trials) == 5 and all(t.state.is_finished() for t in ot_trials)
    told = {json.dumps(t.params, sort_keys=True) for t in ot_trials}
    assert told == {json.dumps(json.loads(s), sort_keys=True) for s in suggestions}
    # and the resumed search kept writing to the same Optuna storage file
    stored = optuna.load_study(study_name="phase3", storage=storage_url(study)).trials
    assert len([t for t in stored if t.state.is_finished()]) == 5


def test_finish_ends_an_interrupted_search_where_it_stands(tmp_path):
    args = ["--smoke-test", "--results", str(tmp_path), "--trials", "6", "--max-concurrent",
            "1", "--confirm-seeds", "0"]
    study = tmp_path / "phase3"
    proc = _search(*args, "--finish", timeout=60)
    assert proc.returncode == 2 and "no search to finish" in proc.stderr, proc.stderr
    _sigkill_after_two_trials(args, study)
    before = sf.read_trials(study)
    assert 2 <= len(before) < 6
    proc = _search("--results", str(tmp_path), "--finish", "--confirm-seeds", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sf.read_trials(study) == before  # no new trials
    info = sf.read_study(study)
    assert info["state"] == "finished"
    assert info["ended_early"] == f"--finish after {len(before)} trials"
    best = best_row(before)
    assert json.loads(best["resolved_config"])["model"] == \
        load_config(study / "best.yaml").to_dict()["model"]
    seeds = sf.read_trials(tmp_path / "phase3-seeds")
    assert len(seeds) == 1 and int(seeds[0]["params"]) == int(best["params"])


def test_time_budget_stops_new_trials_and_lets_running_ones_finish(tmp_path):
    # no trial count: without the budget this search would never end (the subprocess's
    # 300 s timeout fails it); the trials running at the deadline finish and are recorded
    proc = _search("--smoke-test", "--results", str(tmp_path), "--time-budget", "10",
                   "--max-steps", "200", "--no-prune", "--confirm-seeds", "0",
                   "--set", "training.early_stopping=null")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "trials until the time budget ends" in proc.stdout
    trials = sf.read_trials(tmp_path / "phase3")
    assert len(trials) >= 2, trials  # the two started at once (more on an idle machine)
    assert all(r["status"] == "completed" and r["steps"] == "200" for r in trials), trials
    curves = sf.read_curves(tmp_path / "phase3")
    assert {c["trial_id"] for c in curves} == {r["trial_id"] for r in trials}  # none lost
    assert sf.read_study(tmp_path / "phase3")["state"] == "finished"
    assert (tmp_path / "phase3" / "best.yaml").exists()
