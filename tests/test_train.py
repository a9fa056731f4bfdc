"""The `python -m addray.train` command line."""

import json
import subprocess
import sys

import pytest

from addray.core.checkpoint import load_checkpoint


def _run(*args):
    return subprocess.run([sys.executable, "-m", "addray.train", *args],
                          capture_output=True, text=True)


def _small_yaml(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(
        "model: {vocab_size: 13, d_model: 32, n_layers: 1, n_heads: 2, d_ff: 64, "
        "max_seq_len: 16}\n"
        "training: {batch_size: 64, learning_rate: 3e-3, warmup_steps: 5, max_steps: 20,"
        " check_every: 10}\n"
        "data: {base: 10, operand_max: 99, n_train: 2000, n_test: 200}\n")
    return path


@pytest.mark.slow
def test_train_writes_metrics_and_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = _run(str(_small_yaml(tmp_path)), "--out", str(out), "--lr", "0.004",
                "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("exact_match") == 2  # one progress line per evaluation
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("final_exact_match", "best_exact_match", "params", "steps", "wall_seconds",
                "device", "config"):
        assert key in metrics
    assert metrics["steps"] == 20 and metrics["config"]["training"]["learning_rate"] == 0.004
    assert load_checkpoint(out)["state"]["step"] == 20


@pytest.mark.slow
def test_progress_names_each_start_of_a_selection(tmp_path):
    cfg = _small_yaml(tmp_path)
    cfg.write_text(cfg.read_text().replace(
        "check_every: 10}", "check_every: 10, seed: 3, early_stopping: null,"
        " time_budget_s: null, select: {candidates: 2, steps: 10}}"))
    out = tmp_path / "run"
    proc = _run(str(cfg), "--out", str(out), "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    chosen = json.loads((out / "metrics.json").read_text())["selection"]["chosen"]
    lines = [line for line in proc.stdout.splitlines() if "exact_match" in line]
    assert [line.split("  step")[0] for line in lines] == [
        "candidate seed 3", "candidate seed 1003", f"chosen seed {chosen}"]
    assert f"training.select: chose seed {chosen} of seed 3 " in proc.stdout


@pytest.mark.slow
def test_resume_continues_from_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert _run(str(_small_yaml(tmp_path)), "--out", str(out), "--threads", "1").returncode == 0
    proc = _run(str(_small_yaml(tmp_path)), "--out", str(out), "--max-steps", "30", "--resume",
                "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    # only the evaluation at step 30 is new
    assert "step     30" in proc.stdout and "step     10" not in proc.stdout


@pytest.mark.slow
def test_an_existing_run_is_never_replaced_silently(tmp_path):
    out = tmp_path / "run"
    assert _run(str(_small_yaml(tmp_path)), "--out", str(out), "--threads", "1").returncode == 0
    before = (out / "checkpoint.pt").read_bytes()
    proc = _run(str(_small_yaml(tmp_path)), "--out", str(out), "--max-steps", "10")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "already holds a run (checkpoint.pt); pass --resume" in proc.stderr
    assert (out / "checkpoint.pt").read_bytes() == before  # the 20-step run is intact
    proc = _run(str(_small_yaml(tmp_path)), "--out", str(out), "--max-steps", "10",
                "--overwrite", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(out)["state"]["step"] == 10


def test_a_run_folder_in_use_is_refused(tmp_path):
    from addray.files import FolderLock

    out = tmp_path / "run"
    with FolderLock(out, "held by the test"):
        proc = _run(str(_small_yaml(tmp_path)), "--out", str(out))
    assert proc.returncode == 2 and "in use by" in proc.stderr and "pid" in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--threads", "100000"], "--threads: 100000: must be >= 1 and <= 4096"),
    (["--threads", "64"], "--threads = 64: must be <= the"),
    (["--out", "FILE"], "is a file, not a folder"),
])
def test_bad_options_are_one_line(tmp_path, args, message):
    (tmp_path / "FILE").write_text("")
    args = [str(tmp_path / "FILE") if a == "FILE" else a for a in args]
    proc = _run(str(_small_yaml(tmp_path)), *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_a_config_name_cannot_escape_the_runs_folder(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(_small_yaml(tmp_path).read_text() + "name: ../../../somewhere\n")
    proc = _run(str(bad))
    assert proc.returncode == 2 and "name = '../../../somewhere': must be a plain name" \
        in proc.stderr
    assert not (tmp_path.parent / "somewhere").exists()


def test_resume_without_checkpoint_is_one_line(tmp_path):
    proc = _run(str(_small_yaml(tmp_path)), "--out", str(tmp_path / "none"), "--resume")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "no checkpoint to resume from" in proc.stderr


def test_bad_override_is_one_line(tmp_path):
    proc = _run(str(_small_yaml(tmp_path)), "--lr", "5")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: command line: training.learning_rate = 5.0: "
                                   "must be > 0 and <= 1")
