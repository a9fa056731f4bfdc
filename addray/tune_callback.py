"""A Tune callback that keeps trials.csv and curves.csv up to date on the driver."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ray import tune

from addray import study_files as sf
from addray.scheduler import NOTE_ATTR


def _first_line(path: str | None) -> str:
    try:
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()] if path else []
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


class StudyRecorder(tune.Callback):
    """Writes one trials.csv row per finished trial and one curves.csv row per report.

    trials.csv is re-read and rewritten whole on each change, so a resumed study (whose
    callback is unpickled, not constructed anew) never loses or duplicates rows.
    """

    def __init__(self, study_dir: str, study: str):
        self.study_dir = study_dir
        self.study = study

    @property
    def _trials_csv(self) -> Path:
        return Path(self.study_dir) / "trials.csv"

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        spec = trial.config["trial"]
        # Ray's result also has a "config" (the whole param space): ours must win
        row = {**result, "study": self.study, "trial_id": trial.trial_id,
               "config": spec["name"], "seed": spec["seed"],
               "lr": spec["config"]["training"]["learning_rate"], "lr_now": result.get("lr")}
        sf.append_csv(Path(self.study_dir) / "curves.csv", sf.CURVE_COLUMNS, row)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._upsert(self._row(trial, "running", retries_delta=1))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        status = (trial.last_result or {}).get("status", "running")
        self._upsert(self._row(trial, "pruned" if status == "running" else status))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._upsert(self._row(trial, "errored", error=_first_line(trial.error_file)))

    def _row(self, trial: Any, status: str, error: str = "",
             retries_delta: int = 0) -> dict[str, Any]:
        spec = trial.config["trial"]
        cfg = spec["config"]
        model, training = cfg["model"], cfg["training"]
        last = trial.last_result or {}
        previous = {r["trial_id"]: r for r in sf.read_csv(self._trials_csv)}
        retries = int(previous.get(trial.trial_id, {}).get("retries") or 0) + retries_delta
        reason = last.get("stop_reason", "")
        if status == "pruned":
            reason = getattr(trial, NOTE_ATTR, None) or (
                f"ASHA stopped it at step {last.get('step', 0)} with exact match "
                f"{last.get('exact_match', 0.0):.4f}")
        resources = trial.placement_group_factory.required_resources
        return {
            "study": self.study, "trial_id": trial.trial_id, "config": spec["name"],
            "d_model": model["d_model"], "n_layers": model["n_layers"],
            "n_heads": model["n_heads"], "d_ff": model["d_ff"], "params": last.get("params", ""),
            "seed": spec["seed"], "lr": training["learning_rate"],
            "batch_size": training["batch_size"], "status": status, "stop_reason": reason,
            "steps": last.get("step", 0), "max_steps": training["max_steps"],
            "best_exact_match": last.get("best_exact_match", ""),
            "final_exact_match": last.get("exact_match", ""),
            "final_token_accuracy": last.get("token_accuracy", ""),
            "wall_seconds": round(last.get("time_total_s", 0.0), 2),
            "device": last.get("device", ""), "node": last.get("node", ""),
            "gpus": resources.get("GPU", 0), "gpu_ids": last.get("gpu_ids", ""),
            "cpus": resources.get("CPU", 0),
            "retries": retries, "error": error,
            "suggestion": json.dumps(spec["sample"], sort_keys=True) if "sample" in spec else "",
            "score": last.get("search_score", ""),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "resolved_config": json.dumps(cfg, sort_keys=True),
        }

    def _upsert(self, row: dict[str, Any]) -> None:
        rows = {r["trial_id"]: r for r in sf.read_csv(self._trials_csv)}
        old = rows.get(row["trial_id"])
        if old is not None and old["status"] in sf.FINAL_STATUSES:
            return  # a finished trial's row is kept as it is (a resumed study may replay it)
        rows[row["trial_id"]] = row
        sf.write_csv(self._trials_csv, sf.TRIAL_COLUMNS, list(rows.values()))
