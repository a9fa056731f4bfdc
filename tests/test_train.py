"""The `python -m addray.train` command line."""

import json
import subprocess
import sys

from addray.checkpoint import load_checkpoint


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


def test_resume_continues_from_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert _run(str(_small_yaml(tmp_path)), "--out", str(out), "--threads", "1").returncode == 0
    proc = _run(str(_small_yaml(tmp_path)), "--out", str(out), "--max-steps", "30", "--resume",
                "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    # only the evaluation at step 30 is new
    assert "step     30" in proc.stdout and "step     10" not in proc.stdout


def test_resume_without_checkpoint_is_one_line(tmp_path):
    proc = _run(str(_small_yaml(tmp_path)), "--out", str(tmp_path / "none"), "--resume")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "no checkpoint to resume from" in proc.stderr


def test_bad_override_is_one_line(tmp_path):
    proc = _run(str(_small_yaml(tmp_path)), "--lr", "5")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: command line: training.learning_rate = 5.0: "
                                   "must be > 0 and <= 1")
