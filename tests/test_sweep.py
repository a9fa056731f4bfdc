"""The Ray Tune sweep driver, on CPU: smoke studies, logical GPUs, crashes and resume,
retries from checkpoints, and a simulated multi-node cluster."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import ray.cloudpickle

from addray import study_files as sf
from addray.cluster import ClusterError
from addray.sweep import (
    SweepError,
    SweepOptions,
    build_trials,
    default_cpus_per_trial,
    run_sweep,
)

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = ROOT / "sweeps"
CONFIGS = ROOT / "configs"
# flaky_trial below is shipped to Ray workers by value, not by module name
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(autouse=True)
def kill_leftovers():
    """Kill every process this test started that is still alive afterwards, by pid."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    for p in psutil.Process().children(recursive=True):
        if p.pid not in before:
            p.kill()


def _kill_tree(pid: int) -> None:
    try:
        procs = psutil.Process(pid).children(recursive=True) + [psutil.Process(pid)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def _sweep(script: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SWEEPS / script), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def _rows(study_dir: Path) -> list[dict[str, str]]:
    return sf.read_csv(study_dir / "trials.csv")


@pytest.mark.parametrize("script,n", [("phase1.py", 4), ("phase2.py", 3)])
def test_smoke_study_end_to_end(smoke_results, script, n):
    results, logs = smoke_results
    proc = logs[script]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    study = results / script.replace(".py", "")
    rows = _rows(study)
    assert len(rows) == n and len({r["trial_id"] for r in rows}) == n
    for r in rows:
        assert r["status"] in sf.FINAL_STATUSES, r
        assert int(r["params"]) > 0 and r["device"] == "cpu" and r["node"]
    assert sf.read_study(study)["state"] == "finished"
    assert (study / "tune").is_dir()
    curves = sf.read_csv(study / "curves.csv")
    assert {c["config"] for c in curves} == {r["config"] for r in rows}
    assert all(c["step"].isdigit() and 0 <= float(c["exact_match"]) <= 1 for c in curves)
    if script == "phase1.py":
        tiny = next(r for r in rows if r["config"] == "phase1_tiny")
        # the tiny model never reaches its full budget: pruned or stopped early
        assert tiny["status"] in ("pruned", "early_stopped")
        assert int(tiny["steps"]) < int(tiny["max_steps"])
    # Ray's own folder stays readable by Ray's own analysis
    from ray.tune import ExperimentAnalysis

    assert len(ExperimentAnalysis(str(study / "tune")).trials) == n
    assert "trials recorded" in proc.stdout


def test_second_run_does_not_mix_into_first(tmp_path):
    study = tmp_path / "phase2"
    study.mkdir()
    sf.write_study(study, {"study": "phase2"})
    proc = _sweep("phase2.py", "--smoke-test", "--results", str(tmp_path), timeout=60)
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
    rows = run_sweep(opts)
    # --gpus 1 with 0.5 GPU per trial: both trials share logical GPU 0 ...
    assert [r["gpu_ids"] for r in rows] == ["0", "0"]
    # ... at the same time
    curves = sf.read_csv(tmp_path / "s" / "curves.csv")
    spans = {}
    for c in curves:
        t = float(c["timestamp"])
        lo, hi = spans.get(c["trial_id"], (t, t))
        spans[c["trial_id"]] = (min(lo, t), max(hi, t))
    (a0, a1), (b0, b1) = spans.values()
    assert a0 <= b1 and b0 <= a1


@pytest.mark.parametrize("kw,message", [
    ({"gpus": 8}, "--gpus = 8: the Ray cluster has 4 GPUs"),
    ({"gpus_per_trial": 8}, "--gpus-per-trial = 8: exceeds --gpus = 4"),
    ({"gpus": 0, "gpus_per_trial": 0.5}, "the sweep may use no GPU"),
    ({"cpus_per_trial": 64}, "no node of the cluster has that many CPUs"),
])
def test_impossible_requests_fail_fast(tmp_path, kw, message):
    start = time.time()
    with pytest.raises(ClusterError, match=message):
        run_sweep(_small_opts(tmp_path, num_gpus=4, **kw))
    assert time.time() - start < 90  # fails at once instead of waiting PENDING forever


def test_bad_sweep_options(tmp_path):
    with pytest.raises(SweepError, match="--seeds = 0"):
        build_trials(_small_opts(tmp_path, seeds=0))
    with pytest.raises(SweepError, match="no study to resume"):
        run_sweep(_small_opts(tmp_path, resume=True))
    with pytest.raises(SweepError, match="--cpus-per-trial = 0: must be > 0"):
        run_sweep(_small_opts(tmp_path, cpus_per_trial=0))
    (tmp_path / "afile").write_text("")
    with pytest.raises(SweepError, match="is a file, not a folder"):
        run_sweep(_small_opts(tmp_path / "afile"))
    proc = _sweep("phase1.py", "--lr", "1e-4,abc", timeout=60)
    assert proc.returncode == 2 and "expected numbers separated by commas" in proc.stderr
    # nothing listens on port 1: a one-line error at once, not minutes of Ray retries
    proc = _sweep("phase1.py", "--smoke-test", "--address", "127.0.0.1:1", "--results",
                  str(tmp_path), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --address 127.0.0.1:1: no Ray cluster")


ONE_H100 = [{"CPU": 16.0, "GPU": 1.0}]
GPU_CLUSTER = [{"CPU": 4.0}, {"CPU": 64.0, "GPU": 8.0}, {"CPU": 32.0, "GPU": 8.0}]


@pytest.mark.parametrize("nodes,n,gpt,cap,cpus", [
    ([{"CPU": 2.0}], 4, 0.0, None, 1),       # CPU trials share the cores
    ([{"CPU": 2.0}], 1, 0.0, None, 2),
    ([{"CPU": 8.0}, {"CPU": 8.0}], 2, 0.0, None, 8),  # never more than one node has
    (ONE_H100, 4, 1.0, 1, 16),              # one GPU trial at a time gets the node
    (ONE_H100, 4, 0.25, 4, 4),              # four packed on the GPU share its node
    (ONE_H100, 3, 0.25, 4, 5),              # three trials, four slots
    (GPU_CLUSTER, 16, 1.0, 16, 4),          # the tightest GPU node: 32 CPUs / 8 GPUs
    (GPU_CLUSTER, 16, 1.0, 2, 16),          # --gpus 2: two at once
    ([{"CPU": 2.0, "GPU": 4.0}], 4, 0.5, 8, 1),  # logical GPUs: at least one CPU
])
def test_default_cpus_per_trial(nodes, n, gpt, cap, cpus):
    assert default_cpus_per_trial(nodes, n, gpt, cap) == cpus


def test_trials_cover_configs_seeds_and_lrs(tmp_path):
    trials = build_trials(_small_opts(tmp_path, lrs=[1e-3, 3e-3], seeds=2))
    assert len(trials) == 4
    assert {(t["seed"], t["config"]["training"]["learning_rate"]) for t in trials} == {
        (0, 1e-3), (1, 1e-3), (0, 3e-3), (1, 3e-3)}
    # seeds differ in the trainer's seed, not only in the label
    assert len({t["config"]["training"]["seed"] for t in trials}) == 2


def test_sigkill_driver_then_resume(tmp_path):
    # no pruning and no early stopping: every trial must reach step 120
    args = ["--smoke-test", "--results", str(tmp_path), "--cpus-per-trial", "1",
            "--set", "training.early_stopping=null", "--max-steps", "120",
            "--grace-period", "100"]
    study = tmp_path / "phase1"
    driver = subprocess.Popen([sys.executable, str(SWEEPS / "phase1.py"), *args], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            # kill once a trial has finished and another is mid-way (checkpointed at >= 20)
            done = {r["trial_id"] for r in _rows(study)}
            curves = sf.read_csv(study / "curves.csv")
            if done and any(c["trial_id"] not in done and int(c["step"]) >= 20 for c in curves):
                break
            time.sleep(0.1)
    finally:
        _kill_tree(driver.pid)  # the driver and the Ray processes it started, by pid
    before = {r["trial_id"]: r for r in _rows(study)}
    assert 0 < len(before) < 4, "kill must land after one trial and before the last"
    progress = {}
    for c in sf.read_csv(study / "curves.csv"):
        progress[c["trial_id"]] = max(progress.get(c["trial_id"], 0), int(c["step"]))
    proc = _sweep("phase1.py", *args, "--resume")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _rows(study)
    assert len(rows) == 4 and len({r["trial_id"] for r in rows}) == 4
    for r in rows:
        if r["trial_id"] in before:  # finished before the kill: kept, not rerun
            assert r == before[r["trial_id"]]
        assert r["status"] == "completed" and r["steps"] == "120", r
    curves = sf.read_csv(study / "curves.csv")
    for trial_id, step in progress.items():
        if trial_id not in before and step >= 20:
            # it continued from its checkpoint: step 10 was never trained twice
            assert [c["step"] for c in curves if c["trial_id"] == trial_id].count("10") == 1
    assert any(t not in before and s >= 20 for t, s in progress.items()), progress


def _run_patched(params, module, name, replacement):
    """Run the real trial in this worker with ``module.name`` replaced, then restore it."""
    from addray import trainable

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
    opts = _small_opts(tmp_path, seeds=1, max_steps=40, max_failures=1, trainable=flaky_trial)
    [row] = run_sweep(opts)
    assert row["status"] == "completed" and row["steps"] == "40" and row["retries"] == "1"
    steps = [int(c["step"]) for c in sf.read_csv(tmp_path / "s" / "curves.csv")]
    # 10, 20, crash, then 30, 40 from the checkpoint at 20 (not 10, 20 again)
    assert steps == [10, 20, 30, 40]


def test_multi_node_spread_and_node_loss(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    study = tmp_path / "mn"
    args = ["--smoke-test", "--results", str(tmp_path), "--study", "mn", "--address",
            cluster.address, "--cpus-per-trial", "1", "--max-steps", "150",
            "--set", "training.early_stopping=null", "--max-failures", "3",
            "--grace-period", "100"]  # no pruning: every trial must finish
    driver = subprocess.Popen([sys.executable, str(SWEEPS / "phase2.py"), *args], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        victim = workers[1]
        node_tag = victim.node_id[:8]
        deadline = time.time() + 180
        while time.time() < deadline:
            curves = sf.read_csv(study / "curves.csv")
            if any(c["node"].endswith(node_tag) for c in curves):
                break
            time.sleep(0.2)
        cluster.remove_node(victim)  # its trial dies mid-training
        out, _ = driver.communicate(timeout=300)
    finally:
        _kill_tree(driver.pid)
        cluster.shutdown()
    assert driver.returncode == 0, out[-4000:]
    rows = _rows(study)
    assert len(rows) == 3
    assert [(r["status"], r["steps"]) for r in rows] == [("completed", "150")] * 3
    nodes = {c["node"] for c in sf.read_csv(study / "curves.csv")}
    assert len(nodes) >= 2  # trials ran on more than one node
    assert sum(int(r["retries"]) for r in rows) >= 1  # the lost trial ran again elsewhere


def diverging_trial(params):
    """Runs the real trial; seed 0's model outputs inf, so its loss is not finite."""
    from addray import trainable, trainer

    class Exploding(trainer.Transformer):
        def forward(self, idx):
            return super().forward(idx) * float("inf")

    if params["trial"]["seed"] == 0:
        _run_patched(params, trainer, "Transformer", Exploding)
    else:
        trainable.run_trial(params)


def test_diverged_trial_does_not_stop_the_study(tmp_path):
    opts = _small_opts(tmp_path, max_steps=30, trainable=diverging_trial, cpus_per_trial=1,
                       grace_period=100)
    rows = {r["seed"]: r for r in run_sweep(opts)}
    assert rows["0"]["status"] == "diverged" and rows["0"]["steps"] == "10"
    assert rows["1"]["status"] == "completed" and rows["1"]["steps"] == "30"
