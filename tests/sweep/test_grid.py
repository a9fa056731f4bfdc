"""Grid studies on CPU through the real driver: smoke studies, logical GPUs, crashes and
resume, retries from checkpoints, errored and diverged trials, and a simulated
multi-node cluster."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import ray.cloudpickle

from addray import study_files as sf
from addray.core.device import cpu_model
from addray.errors import ClusterError, ConfigError
from addray.sweep.grid import build_configs, plan_grid, run_grid
from addray.sweep.options import SweepOptions
from tests.conftest import CONFIGS, ROOT, SWEEPS, kill_tree, rows, run_script, wait_for

pytestmark = pytest.mark.ray  # studies run for real: Ray started, scripts run

# the trial functions below are shipped to Ray workers by value, not by module name
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


# the default sets at one learning rate: phase 1's eight sizes, phase 2's four shapes
@pytest.mark.parametrize("script,n", [("phase1.py", 8), ("phase2.py", 4)])
def test_smoke_study_end_to_end(smoke_results, script, n):
    results, logs = smoke_results
    proc = logs[script]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    study = results / script.replace(".py", "")
    trials = sf.read_trials(study)
    assert len(trials) == n and len({r["trial_id"] for r in trials}) == n
    for r in trials:
        assert r["status"] in sf.FINAL_STATUSES, r
        assert int(r["params"]) > 0 and r["device"] == "cpu" and r["node"]
        assert r["machine"].startswith(f"{cpu_model()} (") and r["machine"].endswith("CPUs")
        assert r["worst_stratum"] != "" and r["edge_cases"] != "" and r["strata"].startswith("{")
        assert r["carry_boundary"] != ""
        assert int(r["examples"]) == int(r["steps"]) * int(r["batch_size"])
    info = sf.read_study(study)
    assert info["state"] == "finished" and info["errored"] == 0
    assert (study / "tune").is_dir()
    curves = sf.read_curves(study)
    assert {c["config"] for c in curves} == {r["config"] for r in trials}
    assert all(c["step"].isdigit() and 0 <= float(c["exact_match"]) <= 1 for c in curves)
    if script == "phase1.py":
        tiny = next(r for r in trials if r["config"] == "phase1_tiny")
        # the tiny model never reaches its full budget: pruned or stopped early
        assert tiny["status"] in ("pruned", "early_stopped")
        assert int(tiny["steps"]) < int(tiny["max_steps"])
    # Ray's own folder stays readable by Ray's own analysis
    from ray.tune import ExperimentAnalysis

    assert len(ExperimentAnalysis(str(study / "tune")).trials) == n
    assert "trials recorded" in proc.stdout and "local Ray started for this study " \
        "(on loopback, token authentication on: README, Security)" in proc.stdout
    # Ray's own start-up warning about token authentication is replaced by that line
    assert "Token authentication is enabled" not in proc.stdout + proc.stderr


def test_second_run_does_not_mix_into_first(tmp_path):
    study = tmp_path / "phase2"
    study.mkdir()
    sf.write_study(study, {"study": "phase2"})
    proc = run_script("phase2.py", "--smoke-test", "--results", str(tmp_path), timeout=60)
    assert proc.returncode == 2
    assert "already holds study 'phase2'; pass --resume" in proc.stderr
    assert "Traceback" not in proc.stderr


def _small_opts(tmp_path, **kw) -> SweepOptions:
    base = {"study": "s", "configs": [str(CONFIGS / "phase1_tiny.yaml")], "seeds": 2,
            "results": str(tmp_path), "smoke_test": True, "num_cpus": 2,
            "overrides": {"training.early_stopping": None}}
    return SweepOptions(**{**base, **kw})


def test_logical_gpus_pack_two_trials_per_gpu(tmp_path):
    opts = _small_opts(tmp_path, num_gpus=4, gpus=1, gpus_per_trial=0.5, cpus_per_trial=1,
                       max_steps=60)
    trials = run_grid(opts)
    # --gpus 1 with 0.5 GPU per trial: both trials share logical GPU 0 ...
    assert [r["gpu_ids"] for r in trials] == ["0", "0"]
    # ... at the same time
    spans = {}
    for c in sf.read_curves(tmp_path / "s"):
        t = float(c["timestamp"])
        lo, hi = spans.get(c["trial_id"], (t, t))
        spans[c["trial_id"]] = (min(lo, t), max(hi, t))
    (a0, a1), (b0, b1) = spans.values()
    assert a0 <= b1 and b0 <= a1


@pytest.mark.parametrize("kw,message", [
    ({"gpus": 8}, "--gpus = 8: the Ray cluster has 4 GPUs"),
    ({"gpus_per_trial": 8}, "--gpus-per-trial = 8: exceeds --gpus = 4"),
    ({"gpus": 0, "gpus_per_trial": 0.5}, "the study may use no GPU"),
    ({"cpus_per_trial": 64}, "no node of the cluster has that many CPUs"),
    # a trial would fail on its device: refused before any starts
    ({"gpus": 0, "overrides": {"training.early_stopping": None, "training.device": "cuda"}},
     "config phase1_tiny: training.device = cuda, but the study's trials get no GPU"),
])
def test_impossible_requests_fail_fast(tmp_path, kw, message):
    # fails at once instead of leaving trials PENDING forever
    with pytest.raises(ClusterError, match=message):
        run_grid(_small_opts(tmp_path, num_gpus=4, **kw))
    assert sf.read_study(tmp_path / "s") == {}  # nothing started, nothing recorded


def test_trials_cover_configs_seeds_and_lrs(tmp_path):
    combos = build_configs(_small_opts(tmp_path, lrs=[1e-3, 3e-3], seeds=2))
    assert {(seed, lr) for _, lr, seed in combos} == {(0, 1e-3), (1, 1e-3), (0, 3e-3),
                                                      (1, 3e-3)}
    # seeds differ in the trainer's seed, not only in the label
    assert {cfg.training.seed for cfg, _, _ in combos} == {0, 1}


def test_two_configs_of_one_name_are_refused(tmp_path):
    twin = tmp_path / "twin.yaml"
    twin.write_text("name: phase1_tiny\n" + "\n".join(  # another file, the same name
        ln for ln in (CONFIGS / "phase1_tiny.yaml").read_text().splitlines()
        if not ln.startswith("name:")))
    opts = _small_opts(tmp_path, configs=[str(CONFIGS / "phase1_tiny.yaml"), str(twin)])
    with pytest.raises(ConfigError, match=r"twin.yaml: name = 'phase1_tiny': already the "
                                          r"name of .*phase1_tiny.yaml"):
        build_configs(opts)


def test_a_config_with_select_is_refused_by_a_sweep(tmp_path):
    opts = _small_opts(tmp_path, overrides={"training.early_stopping": None,
                                            "training.select": {"candidates": 2, "steps": 5}})
    with pytest.raises(ConfigError, match=r"phase1_tiny.yaml: training.select = "
                       r"\{candidates: 2, steps: 5\}: must be null in a sweep"):
        build_configs(opts)


@pytest.mark.parametrize("lrs,prunable", [([1e-3, 3e-3, 1e-2], True), ([3e-3, 1e-2], False)])
def test_the_plan_says_when_nothing_can_be_pruned(tmp_path, lrs, prunable):
    # a rung keeps the best third of a config's settings: with two there is no such third
    plan = plan_grid(_small_opts(tmp_path, lrs=lrs, compare="config"))
    assert plan.pruning.startswith("pruning on exact_match within each config, rungs at")
    assert ("none will be pruned" not in plan.pruning) == prunable


def named_running(tune_dir, done):
    """The folders of unfinished trials (ids not in ``done``) with a checkpoint on disk
    that the newest experiment state in ``tune_dir`` names (its pickled checkpoint paths,
    as hex in the JSON, hold ``<trial folder>/checkpoint_``)."""
    states = sorted(tune_dir.glob("experiment_state-*.json"))
    try:
        text = states[-1].read_text() if states else ""
    except OSError:
        return []
    return [t for t in sorted(tune_dir.iterdir()) if t.is_dir() and any(t.glob("checkpoint_*"))
            and "_".join(t.name.rsplit("_", 2)[1:]) not in done
            and f"{t.name}/checkpoint_".encode().hex() in text]


def test_sigkill_driver_then_resume(tmp_path):
    # no pruning and no early stopping: every trial must reach step 120
    args = ["--smoke-test", "--configs", "reference", "--results", str(tmp_path),
            "--cpus-per-trial", "1", "--set", "training.early_stopping=null", "--max-steps",
            "120", "--no-prune"]
    study = tmp_path / "phase1"
    driver = subprocess.Popen([sys.executable, str(SWEEPS / "phase1.py"), *args], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # kill once a trial has finished and another is mid-way (checkpointed at >= 20)
        # with Tune's saved state naming a checkpoint of it
        def one_done_one_running():
            done = {r["trial_id"] for r in rows(study / "trials.csv")}
            return bool(done) and any(c["trial_id"] not in done and int(c["step"]) >= 20
                                      for c in rows(study / "curves.csv")) \
                and bool(named_running(study / "tune", done))

        wait_for(one_done_one_running, 240, "a finished trial and a running one")
    finally:
        kill_tree(driver.pid)  # the driver and the Ray processes it started, by pid
    before = {r["trial_id"]: r for r in sf.read_trials(study)}
    assert 0 < len(before) < 4, "kill must land after one trial and before the last"
    progress = {}
    for c in sf.read_curves(study):
        progress[c["trial_id"]] = max(progress.get(c["trial_id"], 0), int(c["step"]))
    # the kill as it lands in Tune's window (seen in CI): a trial's newest checkpoint
    # written, its previous one deleted, the state naming the new one not yet saved
    # (only for trials the state restores from a checkpoint: one that had just written
    # its first when the driver died restarts from nothing, as Tune's state says)
    moved = named_running(study / "tune", set(before))
    for trial in moved:
        saved = sorted(trial.glob("checkpoint_*"))
        index = int(saved[-1].name.split("_")[1])
        saved[-1].rename(trial / f"checkpoint_{index + 1:06d}")
    assert moved, "the running trial has a checkpoint its saved state names"
    proc = run_script("phase1.py", *args, "--resume")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    said = [line for line in proc.stdout.splitlines() if "resumes from" in line]
    assert all(any(f"trial {t.name} resumes from its newest checkpoint" in line
                   for line in said) for t in moved), ([t.name for t in moved], said)
    after = sf.read_trials(study)
    assert len(after) == 4 and len({r["trial_id"] for r in after}) == 4
    for r in after:
        if r["trial_id"] in before:  # finished before the kill: kept, not rerun
            assert r == before[r["trial_id"]]
        assert r["status"] == "completed" and r["steps"] == "120", r
    curves = sf.read_curves(study)
    for trial_id, step in progress.items():
        if trial_id not in before and step >= 20:
            # it continued from its checkpoint: step 10 was never trained twice
            assert [c["step"] for c in curves if c["trial_id"] == trial_id].count("10") == 1
    assert any(t not in before and s >= 20 for t, s in progress.items()), progress


def test_ctrl_c_stops_the_study_with_exit_130_and_resume_advice(tmp_path):
    # Ctrl-C: Tune stops and returns; the driver must still exit non-zero (130, as for any
    # interrupted command) so that README's `phase1.py && addray.report` stops there
    import psutil

    args = ["--smoke-test", "--configs", "reference", "--results", str(tmp_path),
            "--cpus-per-trial", "1", "--set", "training.early_stopping=null", "--max-steps",
            "100000", "--check-every", "10", "--no-prune"]
    study = tmp_path / "phase1"
    driver = subprocess.Popen([sys.executable, str(SWEEPS / "phase1.py"), *args], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = []
    try:
        wait_for(lambda: bool(rows(study / "curves.csv")), 240, "a trial's first evaluation")
        started = psutil.Process(driver.pid).children(recursive=True)
        driver.send_signal(signal.SIGINT)
        out, _ = driver.communicate(timeout=180)
    finally:
        kill_tree(driver.pid)
        for p in started:  # the Ray processes it started, should any outlive it
            if p.is_running():
                p.kill()
    assert driver.returncode == 130, out[-3000:]
    assert sf.read_study(study)["state"] == "interrupted"
    assert "--resume" in out
    assert "Tuner.restore" not in out  # Tune's own advice, not how an addray study resumes
    assert len(sf.read_trials(study)) < 4  # no trial could have run 100,000 steps


def _run_patched(params, module, name, replacement):
    """Run the real trial in this worker with ``module.name`` replaced, then restore it."""
    from addray.sweep import trainable

    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        trainable.run_trial(params)
    finally:
        setattr(module, name, original)


def flaky_trial(params):
    """Runs the real trial, but crashes once right after the first checkpoint at step 20."""
    from ray import tune

    original = tune.report
    first_attempt = tune.get_checkpoint() is None

    def report(metrics, checkpoint=None):
        original(metrics, checkpoint=checkpoint)
        if first_attempt and metrics.get("step") == 20:
            raise RuntimeError("injected crash after step 20")

    _run_patched(params, tune, "report", report)


def test_crashed_trial_is_retried_from_checkpoint(tmp_path):
    opts = _small_opts(tmp_path, seeds=1, max_steps=40, max_failures=1)
    [row] = run_grid(opts, trainable=flaky_trial)
    assert row["status"] == "completed" and row["steps"] == "40" and row["retries"] == "1"
    steps = [int(c["step"]) for c in sf.read_curves(tmp_path / "s")]
    # 10, 20, crash, then 30, 40 from the checkpoint at 20 (not 10, 20 again)
    assert steps == [10, 20, 30, 40]


def always_failing_trial(params):
    if params["trial"]["seed"] == 0:
        raise RuntimeError("this trial always fails")
    from addray.sweep import trainable

    trainable.run_trial(params)


def test_an_errored_trial_makes_a_non_zero_exit_with_everything_written(tmp_path):
    from addray.sweep.cli import exit_code

    opts = _small_opts(tmp_path, max_steps=20, max_failures=0, cpus_per_trial=1)
    trials = {r["seed"]: r for r in run_grid(opts, trainable=always_failing_trial)}
    assert trials["0"]["status"] == "errored" and "always fails" in trials["0"]["error"]
    assert trials["1"]["status"] == "completed"
    assert sf.read_study(tmp_path / "s")["errored"] == 1
    assert exit_code(list(trials.values())) == 1


def test_multi_node_spread_and_node_loss(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    study = tmp_path / "mn"
    args = ["--smoke-test", "--configs", "reference", "--results", str(tmp_path), "--study",
            "mn", "--address",
            cluster.address, "--cpus-per-trial", "1", "--max-steps", "150",
            "--set", "training.early_stopping=null", "--max-failures", "3",
            "--no-prune"]  # every trial must finish
    driver = subprocess.Popen([sys.executable, str(SWEEPS / "phase2.py"), *args], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        victim = workers[1]
        tag = victim.node_id[:8]
        wait_for(lambda: any(c["node"].endswith(tag) for c in rows(study / "curves.csv")),
                 240, "a trial on the second worker")
        cluster.remove_node(victim)  # its trial dies mid-training
        out, _ = driver.communicate(timeout=300)
    finally:
        kill_tree(driver.pid)
        cluster.shutdown()
    assert driver.returncode == 0, out[-4000:]
    trials = sf.read_trials(study)
    assert [(r["status"], r["steps"]) for r in trials] == [("completed", "150")] * 3
    assert len({c["node"] for c in sf.read_curves(study)}) >= 2  # ran on more than one node
    assert sum(int(r["retries"]) for r in trials) >= 1  # the lost trial ran again elsewhere


def diverging_trial(params):
    """Runs the real trial; seed 0's model outputs inf, so its loss is not finite."""
    from addray.core import trainer
    from addray.sweep import trainable

    class Exploding(trainer.Transformer):
        def forward(self, idx):
            return super().forward(idx) * float("inf")

    if params["trial"]["seed"] == 0:
        _run_patched(params, trainer, "Transformer", Exploding)
    else:
        trainable.run_trial(params)


def test_diverged_trial_does_not_stop_the_study(tmp_path):
    opts = _small_opts(tmp_path, max_steps=30, cpus_per_trial=1, prune=False)
    trials = {r["seed"]: r for r in run_grid(opts, trainable=diverging_trial)}
    assert trials["0"]["status"] == "diverged" and trials["0"]["steps"] == "10"
    assert trials["1"]["status"] == "completed" and trials["1"]["steps"] == "30"


def test_two_drivers_on_one_study_one_runs(tmp_path):
    # the second driver (and a --resume while the first is alive) is refused in one line,
    # and trials.csv holds each trial once
    args = ["--smoke-test", "--configs", "reference", "--results", str(tmp_path),
            "--cpus-per-trial", "1"]
    first = subprocess.Popen([sys.executable, str(SWEEPS / "phase1.py"), *args], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (tmp_path / "phase1" / ".lock").exists(), 60, "the first driver")
        time.sleep(0.5)
        for extra in ([], ["--resume"]):
            second = run_script("phase1.py", *args, *extra, timeout=120)
            assert second.returncode == 2, second.stderr
            assert "in use by" in second.stderr and "pid" in second.stderr
            assert second.stderr.count("\n") == 1
        out, _ = first.communicate(timeout=300)
    finally:
        kill_tree(first.pid)
    assert first.returncode == 0, out[-3000:]
    trials = sf.read_trials(tmp_path / "phase1")
    assert len(trials) == 4 and len({r["config"] for r in trials}) == 4
    assert all(r["retries"] == "0" for r in trials)


def test_stale_trial_folders_are_removed(tmp_path):
    import tempfile
    from pathlib import Path

    from addray.sweep.trainable import WORK_PREFIX, remove_stale_work_dirs

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{dead}-"))
    (stale / "ckpt").mkdir()
    live = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{__import__('os').getpid()}-"))
    try:
        assert remove_stale_work_dirs() >= 1
        assert not stale.exists() and live.exists()
    finally:
        live.rmdir()
