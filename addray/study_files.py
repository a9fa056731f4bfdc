"""The files a study writes beside Ray's own experiment folder. No Ray here.

    RESULTS/<study>/study.json   name, command, options, state (running/finished/interrupted)
    RESULTS/<study>/trials.csv   one row per trial, rewritten as trials finish
    RESULTS/<study>/curves.csv   one row per report (evaluation) of every trial
    RESULTS/<study>/tune/        Ray Tune's experiment folder, untouched
    RESULTS/<study>/best.yaml, best.pt   a search (phase 3): the best trial's config and weights

Trial status is one of: completed (ran max_steps), early_stopped (patience or exact
match 1.0), pruned (stopped by the ASHA scheduler), time_limit (ran out of its
training.time_budget_s), diverged (non-finite loss), errored (raised after all
retries), running (not finished when last written). Pruned and time_limit trials
stopped before their step budget: their accuracy is a lower bound (censored).
A search's rows also hold the searcher's suggestion (JSON) and the objective's score.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

TRIAL_COLUMNS = [
    "study", "trial_id", "config", "d_model", "n_layers", "n_heads", "d_ff", "params", "seed",
    "lr", "batch_size", "status", "stop_reason", "steps", "max_steps", "best_exact_match",
    "final_exact_match", "final_token_accuracy", "wall_seconds", "device", "node", "gpus",
    "gpu_ids", "cpus", "retries", "error", "finished_at", "suggestion", "score",
    "resolved_config",
]
CURVE_COLUMNS = [
    "study", "trial_id", "config", "seed", "lr", "params", "step", "train_loss", "eval_loss",
    "exact_match", "token_accuracy", "lr_now", "examples_per_s", "elapsed_s", "node",
    "pid", "timestamp",
]
STATUSES = ("completed", "early_stopped", "pruned", "time_limit", "diverged", "errored",
            "running")
FINAL_STATUSES = ("completed", "early_stopped", "pruned", "time_limit", "diverged")
CENSORED_STATUSES = ("pruned", "time_limit")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Rewrite a whole CSV atomically: a crash leaves the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def append_csv(path: Path, columns: list[str], row: dict[str, Any]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def write_study(study_dir: Path, info: dict[str, Any]) -> None:
    info = {**info, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_atomic(study_dir / "study.json", json.dumps(info, indent=2) + "\n")


def read_study(study_dir: Path) -> dict[str, Any]:
    return json.loads((study_dir / "study.json").read_text())
