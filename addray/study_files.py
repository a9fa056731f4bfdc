"""A study's folder: where it is, and the files the sweep layer writes and the analysis
side reads. No torch, no Ray here.

    RESULTS/<study>/study.json   name, command, options, state (running/finished/
                                 interrupted), trial counts
    RESULTS/<study>/trials.csv   one row per trial, rewritten as trials finish
    RESULTS/<study>/curves.csv   one row per report (evaluation) of every trial
    RESULTS/<study>/tune/        Ray Tune's experiment folder, untouched
    RESULTS/<study>/.lock        held by the study's driver while it runs
    RESULTS/<study>/best.yaml, best.pt, optuna.db   a search (phase 3): the best trial's
                                 config and weights, the searcher's Optuna storage

Trial status is one of: completed (ran max_steps), early_stopped (patience or exact
match 1.0), pruned (stopped by the scheduler), time_limit (ran out of its
training.time_budget_s), diverged (non-finite loss), errored (raised after all
retries), running (not finished when last written). Pruned and time_limit trials
stopped before their budget: their accuracy is a lower bound (censored).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from addray import files, names, store
from addray.errors import ConfigError

TRIAL_COLUMNS = [
    "study", "trial_id", "config", "d_model", "n_layers", "n_heads", "d_ff", "params", "seed",
    "lr", "batch_size", "status", "stop_reason", "steps", "max_steps", "examples", "flops",
    "clock", "best_exact_match", "final_exact_match", "final_token_accuracy",
    "worst_stratum", "carry_boundary", "edge_cases", "learned", "strata", "wall_seconds",
    "device", "node", "machine", "gpus", "gpu_ids", "cpus", "retries", "error", "finished_at",
    "suggestion", "score", "resolved_config", "group",
]
CURVE_COLUMNS = [
    "study", "trial_id", "config", "seed", "lr", "params", "step", "examples", "flops",
    "train_loss", "eval_loss", "exact_match", "token_accuracy", "worst_stratum",
    "carry_boundary", "edge_cases", "strata", "lr_now", "examples_per_s", "elapsed_s", "node",
    "pid", "timestamp",
]


def json_cell(value: Any) -> str:
    """A JSON value as a CSV cell (empty for none)."""
    return json.dumps(value, sort_keys=True) if value not in (None, "") else ""


def trial_row(*, study: str, trial_id: str, name: str, config: dict[str, Any],
              result: dict[str, Any], status: str, **fields: Any) -> dict[str, Any]:
    """One trials.csv row, as a study's recorder and ``addray.collect`` both write it: the
    config's shape, seed and rate, ``result``'s metrics (a trainer report: ``step``,
    ``exact_match``, ...), then ``fields`` (where it ran, why it stopped, ...) over those."""
    model, training = config.get("model", {}), config.get("training", {})
    row: dict[str, Any] = dict.fromkeys(TRIAL_COLUMNS, "")
    row.update({
        "study": study, "trial_id": trial_id, "config": name, "status": status,
        "d_model": model.get("d_model", ""), "n_layers": model.get("n_layers", ""),
        "n_heads": model.get("n_heads", ""), "d_ff": model.get("d_ff", ""),
        "seed": training.get("seed", ""), "lr": training.get("learning_rate", ""),
        "batch_size": training.get("batch_size", ""), "max_steps": training.get("max_steps", ""),
        "params": result.get("params", ""), "steps": result.get("step", ""),
        "examples": result.get("examples", ""), "flops": result.get("flops", ""),
        "best_exact_match": result.get("best_exact_match", ""),
        "final_exact_match": result.get("exact_match", ""),
        "final_token_accuracy": result.get("token_accuracy", ""),
        "worst_stratum": result.get("worst_stratum", ""),
        "carry_boundary": result.get("carry_boundary", ""),
        "edge_cases": result.get("edge_cases", ""), "learned": result.get("learned", ""),
        "strata": json_cell(result.get("strata")), "machine": result.get("machine", ""),
        "device": result.get("device", ""), "retries": 0,
        "resolved_config": json.dumps(config, sort_keys=True),
    })
    row.update(fields)
    return row
FINAL_STATUSES = ("completed", "early_stopped", "pruned", "time_limit", "diverged")
CENSORED_STATUSES = ("pruned", "time_limit")


# a results folder's committed evidence (results/reference/): the report reads it on its
# own, never mixed into the studies around it, so no study may take its name
EVIDENCE = "reference"


def study_location(results: str | Path, study: str) -> str:
    """Where a study lives, as study.json records it: RESULTS/STUDY's absolute path, or
    its URI on object storage."""
    if store.is_uri(results):
        return store.Location.parse(str(results)).child(study).uri
    return str(study_folder(results, study))


def study_folder(results: str | Path, study: str) -> Path:
    """RESULTS/STUDY as an absolute path; the study name must be a plain name, so that
    nothing is written outside the results folder, and the folder may not be a link. On
    object storage (``--results s3://...``): this process's local copy of it."""
    if store.is_uri(results):
        if not names.is_name(study):
            raise ConfigError(f"--study {show_name(study)}: {names.RULE}")
        return store.local_copy(store.Location.parse(str(results)).child(study))
    if not names.is_name(study):
        raise ConfigError(f"--study {show_name(study)}: {names.RULE}")
    if study == EVIDENCE:
        raise ConfigError(f"--study {study}: reserved for the committed evidence "
                          f"(RESULTS/{EVIDENCE}/, which reports leave out of the studies "
                          f"around it); choose another name")
    root = Path(results).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--results {results}: is a file, not a folder")
    return files.not_a_link(root / study, "study folder")


def show_name(value: object) -> str:
    return repr(value) if isinstance(value, str) and len(value) <= 100 else "(too long)"


def trials_csv(study_dir: Path) -> Path:
    return study_dir / "trials.csv"


def curves_csv(study_dir: Path) -> Path:
    return study_dir / "curves.csv"


def read_trials(study_dir: Path) -> list[dict[str, str]]:
    rows = files.read_csv(trials_csv(study_dir), ("trial_id", "config", "status", "params"))
    for row in rows:  # written before the pruning clock's column was named "clock"
        if "budget" in row and "clock" not in row:
            row["clock"] = row.pop("budget")
    return rows


def read_curves(study_dir: Path) -> list[dict[str, str]]:
    return files.read_csv(curves_csv(study_dir), ("trial_id", "step", "exact_match"))


def write_study(study_dir: Path, info: dict[str, Any]) -> None:
    info = {**info, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    files.write_text(study_dir / "study.json", json.dumps(info, indent=2) + "\n")


def read_study(study_dir: Path) -> dict[str, Any]:
    """study.json, or ``{}`` when there is none; a corrupt file is a DataError."""
    path = study_dir / "study.json"
    if not path.exists():
        return {}
    return files.read_json_object(path)


def best_search_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A search's best trial, as the search itself judges it: the highest objective score
    (``addray.sweep.objective.search_score``: any model above the threshold beats any
    below, and among those above the one with fewer parameters), so the driver's saved
    model and the report's "smallest that adds" are the same trial. None if no row has
    a score."""
    def score(r: dict[str, Any]) -> float | None:
        try:
            x = float(r.get("score"))
        except (TypeError, ValueError):
            return None
        return x if x == x else None

    scored = [r for r in rows if score(r) is not None]
    if not scored:
        return None
    return max(scored, key=lambda r: (score(r), -float(r.get("params") or 0)))
