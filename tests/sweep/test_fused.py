"""Fused grid studies through the real driver (--fuse on, on CPU): one Tune trial per
config, one trials.csv row and curve per run, pruning among a trial's own runs, the
options that cannot go with it."""

from __future__ import annotations

import signal
import subprocess
import sys

import psutil
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
    # without --cpus-per-trial: a trial's CPUs (its threads) by the runs it holds
    args = [a for a in BASE if a not in ("--cpus-per-trial", "1")]
    proc = run_script("phase1.py", *args, "--compare", "config", "--floor", "0.9",
                      "--grace-period", "1", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "CPUs per trial (its torch threads) by its runs: 1 for 4 runs" in proc.stdout
    trials = rows(tmp_path / "phase1" / "trials.csv")
    assert len(trials) == 8 and {r["cpus"] for r in trials} == {"1.0"}
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


# The contract: a fused study records what an unfused one would, interrupted or not.
# phase1_8k at three rates, one seed; the floor stops a run whose score (exact match plus
# a millionth of token accuracy) is below 3.4e-7 at a rung: at 0% exact match, a token
# accuracy under 34%. It is each run's own rule, so an unfused study (whose trials run in
# any order) decides as the fused one; at 150 steps the runs of both still agree to
# float32 rounding (they drift apart later: training amplifies rounding).
CONTRACT = ["--smoke-test", "--configs", str(CONFIGS / "sizes" / "phase1_8k.yaml"),
            "--lr", "1e-3,3e-3,1e-2", "--seeds", "1", "--compare", "config",
            "--grace-period", "1", "--floor", "3.4e-7", "--max-steps", "150",
            "--check-every", "10", "--cpus-per-trial", "1",
            "--set", "training.early_stopping=null", "--set", "training.batch_size=512"]


def _record(study):
    """trials.csv by learning rate: what the contract compares."""
    return {r["lr"]: r for r in sf.read_trials(study)}


def _interrupted(results, sig):
    """Run the fused study, stop its driver with ``sig`` once a run was pruned and the
    others are past their second rung, then resume it; return its folder."""
    args = [*CONTRACT, "--fuse", "on", "--results", str(results)]
    study = results / "phase1"
    driver = subprocess.Popen([sys.executable, str(SWEEPS / "phase1.py"), *args], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = []
    try:
        def past_pruning():
            steps = [int(c["step"]) for c in rows(study / "curves.csv")] \
                if (study / "curves.csv").exists() else []
            return bool(steps) and max(steps) >= 40

        wait_for(past_pruning, 240, "the fused trial past its pruning")
        started = psutil.Process(driver.pid).children(recursive=True)
        if sig == signal.SIGKILL:
            kill_tree(driver.pid)  # the driver and the Ray processes it started, by pid
        else:
            driver.send_signal(sig)
            assert driver.wait(timeout=180) == 130
    finally:
        kill_tree(driver.pid)
        for p in started:
            if p.is_running():
                p.kill()
    before = _record(study)
    # what it had decided is on record before the resume: the pruned runs, and no more
    assert {lr: r["status"] for lr, r in before.items()} == {"0.001": "pruned",
                                                             "0.003": "pruned"}, before
    assert all(r["steps"] == "10" for r in before.values()), before
    steps = [int(c["step"]) for c in sf.read_curves(study)]
    assert max(steps) < 150, "the study ended before it was interrupted: nothing tested"
    if sig == signal.SIGKILL:
        _a_damaged_group_checkpoint_stops_the_resume(results, args)
    proc = run_script("phase1.py", *args, "--resume")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return study


def _a_damaged_group_checkpoint_stops_the_resume(results, args):
    """The interrupted study with its group checkpoint cut short: --resume is one line
    naming the study's own file, before Ray starts (no retries, no runs marked
    errored), and leaves the study as it was; with the file whole again it resumes."""
    saved = list((results / "phase1" / "tune").glob("*/checkpoint_*/fused.pt"))
    assert len(saved) == 1, saved
    whole = saved[0].read_bytes()
    trials = (results / "phase1" / "trials.csv").read_bytes()
    saved[0].write_bytes(whole[:5000])
    proc = run_script("phase1.py", *args, "--resume", timeout=120)
    saved[0].write_bytes(whole)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    err = proc.stderr.strip()
    assert err.startswith(f"error: {saved[0]}: not an addray checkpoint"), err
    assert "\n" not in err and "--study" in err
    assert "Traceback" not in proc.stdout + proc.stderr and "Ray" not in proc.stdout
    assert (results / "phase1" / "trials.csv").read_bytes() == trials


def _same(got, want, label):
    assert got.keys() == want.keys(), (label, got.keys(), want.keys())
    for lr, w in want.items():
        g = got[lr]
        for key in ("status", "steps", "stop_reason", "params"):
            assert g[key] == w[key], (label, lr, key, g[key], w[key])
        for key in ("final_exact_match", "best_exact_match", "final_token_accuracy"):
            assert float(g[key]) == pytest.approx(float(w[key]), abs=1e-6), (label, lr, key)


def test_a_fused_study_records_what_an_unfused_one_would_interrupted_or_not(tmp_path):
    unfused = run_script("phase1.py", *CONTRACT, "--fuse", "off", "--results",
                         str(tmp_path / "unfused"))
    assert unfused.returncode == 0, unfused.stdout[-3000:] + unfused.stderr[-3000:]
    want = _record(tmp_path / "unfused" / "phase1")
    # the study this compares: two rates pruned at the first rung, one run to the end
    assert {lr: (r["status"], r["steps"]) for lr, r in want.items()} == {
        "0.001": ("pruned", "10"), "0.003": ("pruned", "10"), "0.01": ("completed", "150")}
    assert all("below the floor" in want[lr]["stop_reason"] for lr in ("0.001", "0.003"))

    fused = run_script("phase1.py", *CONTRACT, "--fuse", "on", "--results",
                       str(tmp_path / "fused"))
    assert fused.returncode == 0, fused.stdout[-3000:] + fused.stderr[-3000:]
    _same(_record(tmp_path / "fused" / "phase1"), want, "fused")

    for sig in (signal.SIGINT, signal.SIGKILL):
        study = _interrupted(tmp_path / sig.name, sig)
        _same(_record(study), want, f"fused, {sig.name} and --resume")
        curves = sf.read_curves(study)
        for r in sf.read_trials(study):  # every evaluation once, none lost or repeated
            mine = sorted(int(c["step"]) for c in curves if c["trial_id"] == r["trial_id"])
            assert mine == list(range(10, int(r["steps"]) + 1, 10)), (sig.name, r, mine)
