"""Fused grid studies through the real driver (--fuse on, on CPU): one Tune trial per
config, one trials.csv row and curve per run, pruning among a trial's own runs, the
options that cannot go with it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from addray import study_files as sf
from tests.conftest import CONFIGS, ROOT, SWEEPS, kill_tree, rows, run_script, wait_for

pytestmark = pytest.mark.ray  # studies run for real: Ray started, scripts run

TWO = f"{CONFIGS / 'sizes' / 'phase1_2k.yaml'},{CONFIGS / 'sizes' / 'phase1_8k.yaml'}"
BASE = ["--smoke-test", "--configs", TWO, "--lr", "1e-3,1e-2", "--seeds", "2", "--fuse", "on",
        "--cpus-per-trial", "1", "--set", "training.early_stopping=null"]


def test_a_fused_study_writes_a_row_and_a_curve_per_run(tmp_path):
    proc = run_script("phase1.py", *BASE, "--no-prune", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "8 runs in 2 trials, 2 of them fused" in proc.stdout
    study = tmp_path / "phase1"
    trials = sf.read_trials(study)
    assert len(trials) == 8 and len({r["trial_id"] for r in trials}) == 8
    for name in ("phase1_2k", "phase1_8k"):
        mine = [r for r in trials if r["config"] == name]
        assert len({r["group"] for r in mine}) == 1 and mine[0]["group"]  # one trial
        assert {(r["seed"], r["lr"]) for r in mine} == {
            (s, lr) for s in ("0", "1") for lr in ("0.001", "0.01")}
        assert all(r["status"] == "completed" and r["steps"] == "60" for r in mine), mine
    curves = sf.read_curves(study)
    for r in trials:  # every run's evaluations, each once
        steps = [int(c["step"]) for c in curves if c["trial_id"] == r["trial_id"]]
        assert steps == list(range(10, 61, 10)), (r["trial_id"], steps)
    # runs of one config differ: each trained with its own seed and rate
    finals = {r["final_exact_match"] + r["best_exact_match"] for r in trials}
    losses = {c["eval_loss"] for c in curves if c["step"] == "60"}
    assert len(losses) == 8, losses
    assert finals
    report = subprocess.run([sys.executable, "-m", "addray.report", str(study)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "phase1: 8 trials" in report.stdout


def test_runs_of_a_fused_trial_are_pruned_by_the_study_s_rule(tmp_path):
    # a floor no smoke model reaches: every setting stops at the first rung, with why
    proc = run_script("phase1.py", *BASE, "--compare", "config", "--floor", "0.9",
                      "--grace-period", "1", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = rows(tmp_path / "phase1" / "trials.csv")
    assert len(trials) == 8
    for r in trials:
        assert r["status"] == "pruned", r
        assert "below the floor 0.9" in r["stop_reason"], r["stop_reason"]
        assert int(r["steps"]) < 60


@pytest.mark.parametrize("extra,message", [
    (["--compare", "config", "--screen"], "--fuse = on: cannot go with --screen"),
    (["--compare", "all"], "--fuse = on: needs --compare config"),
])
def test_options_that_cannot_go_with_fusing_are_refused(tmp_path, extra, message):
    proc = run_script("phase1.py", *BASE, *extra, "--results", str(tmp_path), timeout=60)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "phase1").exists()


def test_a_killed_fused_study_resumes_its_trials_from_their_checkpoints(tmp_path):
    args = [*BASE, "--no-prune", "--max-steps", "300", "--results", str(tmp_path)]
    study = tmp_path / "phase1"
    driver = subprocess.Popen([sys.executable, str(SWEEPS / "phase1.py"), *args], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def checkpointed_midway():  # a run past step 50 (saved) and not yet at the end
            steps = [int(c["step"]) for c in rows(study / "curves.csv")] \
                if (study / "curves.csv").exists() else []
            return bool(steps) and 50 <= max(steps) < 250

        wait_for(checkpointed_midway, 240, "a fused trial half-way")
    finally:
        kill_tree(driver.pid)  # the driver and the Ray processes it started, by pid
    before = {}
    for c in sf.read_curves(study):
        before[c["trial_id"]] = max(before.get(c["trial_id"], 0), int(c["step"]))
    proc = run_script("phase1.py", *args, "--resume")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    after = sf.read_trials(study)
    assert len(after) == 8 and all(r["status"] == "completed" and r["steps"] == "300"
                                   for r in after), after
    curves = sf.read_curves(study)
    for trial_id, step in before.items():
        mine = [int(c["step"]) for c in curves if c["trial_id"] == trial_id]
        assert mine[-1] == 300 and sorted(set(mine)) == list(range(10, 301, 10))
        if step >= 50:  # it went on from a checkpoint: its first evaluation was not redone
            assert mine.count(10) == 1, (trial_id, mine)
