"""Watching a study where users look, each checked with the tool's own client: the Ray
job API (the study's job and its metadata), the State API (trial actors by name), a
scrape of the node's metrics endpoint (the trials' live metrics), TensorBoard's event
reader (scalars by training step and stratum, HParams), and Tune's clients (best result
with no arguments, flat columns)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from addray import study_files as sf
from tests.conftest import ROOT, kill_tree

pytestmark = pytest.mark.ray

PHASE1 = ROOT / "sweeps" / "phase1.py"


def _token_headers() -> dict[str, str]:
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return {"Authorization": f"Bearer {path.read_text().strip()}"} if path.exists() else {}


def _get(url: str) -> str:
    req = urllib.request.Request(url, headers=_token_headers())
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def _poll(what: str, fn, timeout: float, proc: subprocess.Popen, log: Path):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = fn()
        except OSError:
            value = None
        if value:
            return value
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout:g} s\n{log.read_text()[-3000:]}")


def _live_metric(url: str, name: str) -> dict[str, str] | None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(_get(url)):
        for sample in family.samples:
            if sample.name == name:
                return sample.labels
    return None


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """A smoke study with --dashboard, watched while it runs; what was seen, and where
    its results are."""
    results = tmp_path_factory.mktemp("watch")
    log = results / "driver.log"
    env = {**os.environ, "RAY_metrics_report_interval_ms": "1000", "RAY_AUTH_MODE": "token"}
    mlflow_uri, server = _mlflow_server(results)
    cmd = [sys.executable, str(PHASE1), "--smoke-test", "--dashboard", "--study", "watched",
           "--configs", "configs/sizes/phase1_2k.yaml", "--lr", "1e-3,3e-3", "--no-prune",
           "--max-steps", "160", "--check-every", "20", "--set",
           "training.early_stopping=null", "--results", str(results), "--mlflow", mlflow_uri]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    seen = {"mlflow": mlflow_uri}
    try:
        text = lambda: log.read_text()  # noqa: E731
        dashboard = _poll("dashboard line", lambda: re.search(
            r"Ray dashboard at (http://\S+)", text()), 120, proc, log).group(1)
        metrics = _poll("metrics line", lambda: re.search(
            r"live metrics .* at (http://\S+/metrics)", text()), 120, proc, log).group(1)
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(dashboard, headers=_token_headers())
        seen["jobs"] = _poll("job of the study", lambda: [
            j for j in client.list_jobs() if (j.metadata or {}).get("addray_study")
            == "watched"], 60, proc, log)
        seen["live"] = _poll("live exact_match", lambda: _live_metric(
            metrics, "ray_addray_exact_match"), 180, proc, log)
        import json

        seen["actors"] = _poll("trial actors", lambda: [
            a.get("repr_name", "") for a in json.loads(_get(
                f"{dashboard}/api/v0/actors?detail=1"))["data"]["result"]["result"]
            if "watched:" in (a.get("repr_name") or "")], 60, proc, log)
        proc.wait(timeout=300)
        seen["returncode"] = proc.returncode
        seen["log"] = log.read_text()
        yield results / "watched", seen
    finally:
        kill_tree(proc.pid)
        kill_tree(server.pid)


def _mlflow_server(root: Path) -> tuple[str, subprocess.Popen]:
    """A real `mlflow server` on loopback, with its store and artifacts under ``root``."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--backend-store-uri",
         f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "art")],
        cwd=root, stdout=(root / "mlflow.log").open("w"), stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if _get(f"{uri}/health").strip() == "OK":
                return uri, server
        except OSError:
            time.sleep(0.5)
    kill_tree(server.pid)
    raise AssertionError(f"mlflow server did not start:\n{(root / 'mlflow.log').read_text()}")


def test_the_dashboard_shows_the_studys_job_actors_and_live_metrics(watched):
    study_dir, seen = watched
    assert seen["returncode"] == 0, seen["log"][-3000:]
    job = seen["jobs"][0]
    assert job.metadata["addray_results"] == str(study_dir)
    assert job.metadata["job_name"] == "watched"  # the Jobs page's Name column
    assert "phase1.py" in job.metadata["addray_command"] and "phase1.py" in job.entrypoint
    labels = seen["live"]
    assert labels["study"] == "watched" and labels["config"] == "phase1_2k"
    assert labels["trial"].startswith("phase1_2k-s0-lr") and labels["lr"] in ("0.001", "0.003")
    assert all(re.fullmatch(r"watched:phase1_2k-s0-lr0\.00[13]", a) for a in seen["actors"])


def test_tensorboard_plots_by_training_step_and_stratum(watched):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    study_dir, _ = watched
    curves = [r for r in sf.read_curves(study_dir)]
    folders = sorted((study_dir / "tune").glob("phase1_2k-*"))
    assert len(folders) == 2
    for folder in folders:
        acc = EventAccumulator(str(folder))
        acc.Reload()
        tags = acc.Tags()["scalars"]
        steps = [e.step for e in acc.Scalars("exact_match")]
        lr = "0.001" if "lr0.001" in folder.name else "0.003"
        mine = [int(r["step"]) for r in curves if f"{float(r['lr']):g}" == lr]
        assert steps == sorted(mine) == list(range(20, 161, 20))  # the training step
        assert "strata/2+2 tokens, carry" in tags and "boundary/low tokens sum to 99" in tags
        assert all(0 <= e.value <= 1 for e in acc.Scalars("strata/2+2 tokens, carry"))
        hparams = acc.PluginTagToContent("hparams")
        assert "_hparams_/session_start_info" in hparams
        start = hparams["_hparams_/session_start_info"]
        assert b"n_layers" in start and b"params" in start and b"completed" in start
        assert b"label" not in start and b"vocab_size" not in start  # constants left out


def test_tunes_clients_work_without_arguments(watched):
    from ray import tune

    from addray.sweep.experiment import experiment
    from addray.sweep.trainable import run_trial

    study_dir, _ = watched
    rows = {f"{float(r['lr']):g}": float(r["final_exact_match"])
            for r in sf.read_trials(study_dir)}
    best = tune.Tuner.restore(str(study_dir / "tune"), trainable=run_trial) \
        .get_results().get_best_result()
    assert best.metrics["exact_match"] == max(rows.values())
    assert best.config["config"] == "phase1_2k" and best.config["params"] == 2367
    analysis = experiment(study_dir)  # Tune's ExperimentAnalysis, the study's metric set
    assert analysis.get_best_trial().config["lr"] == best.config["lr"]
    assert analysis.best_config["config"] == "phase1_2k"
    frame = analysis.dataframe()
    for column in ("config/config", "config/lr", "config/seed", "config/params",
                   "config/d_model", "config/n_layers"):
        assert column in frame.columns
    assert sorted(frame["config/lr"]) == [1e-3, 3e-3]


def test_mlflow_holds_every_trial_as_a_run(watched):
    from mlflow.tracking import MlflowClient

    study_dir, seen = watched
    client = MlflowClient(tracking_uri=seen["mlflow"])
    experiment = client.get_experiment_by_name("watched")
    runs = client.search_runs([experiment.experiment_id])
    curves = sf.read_curves(study_dir)
    trials = {f"{float(r['lr']):g}": r for r in sf.read_trials(study_dir)}
    assert sorted(r.info.run_name for r in runs) == ["phase1_2k-s0-lr0.001",
                                                    "phase1_2k-s0-lr0.003"]
    for run in runs:
        lr = run.data.params["lr"]
        assert run.data.params["config"] == "phase1_2k" and run.data.params["params"] == "2367"
        assert run.info.status == "FINISHED" and run.data.tags["status"] == "completed"
        assert run.data.tags["status"] == trials[f"{float(lr):g}"]["status"]
        history = client.get_metric_history(run.info.run_id, "exact_match")
        mine = sorted((int(c["step"]), float(c["exact_match"])) for c in curves
                      if f"{float(c['lr']):g}" == f"{float(lr):g}")
        assert sorted((m.step, m.value) for m in history) == mine
        assert "strata/2-2 tokens carry" in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "checkpoint"} <= artifacts
        inside = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}
        assert "checkpoint/checkpoint.pt" in inside
