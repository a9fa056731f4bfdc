"""A Tune callback that keeps a study's trials.csv and curves.csv up to date."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray import tune

from addray import files
from addray import study_files as sf
from addray.sweep.scheduler import RungScheduler
from addray.sweep.study_callback import StudyFiles


def _last_line(path: str | None) -> str:
    """The last non-empty line of a trial's error file (the exception itself)."""
    try:
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()] if path else []
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""



def member_id(trial_id: str, k: int) -> str:
    """The trials.csv id of run k of a fused trial."""
    return f"{trial_id}-{k}"


class StudyRecorder(StudyFiles, tune.Callback):
    """Writes one trials.csv row per finished trial and one curves.csv row per report.

    trials.csv is re-read and rewritten whole on each change, so a resumed study (whose
    callback is unpickled, not constructed anew) never loses or duplicates rows. Why a
    trial was pruned comes from the study's scheduler (``RungScheduler.stop_note``).
    """

    def __init__(self, study_dir: str, study: str, scheduler: RungScheduler | None = None,
                 results: str | None = None):
        self._study_dir = Path(study_dir)
        self.study = study
        self.scheduler = scheduler
        self.results = results  # on object storage: its URI (the folder is a local copy)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        spec = trial.config["trial"]
        if "members" in spec:  # a fused trial: a curve row for each run evaluated now
            for k, m in enumerate(result.get("members") or []):
                if m and m.get("fresh") == result.get("step"):
                    member = spec["members"][k]
                    self._append_curve({
                        **m, "study": self.study, "trial_id": member_id(trial.trial_id, k),
                        "config": member["name"], "seed": member["seed"],
                        "lr": member["config"]["training"]["learning_rate"],
                        "lr_now": m.get("lr"), "strata": sf.json_cell(m.get("strata")),
                        "node": result.get("node", ""), "pid": result.get("pid", "")})
                    if m.get("status") in sf.FINAL_STATUSES:
                        # a run that stopped here is on record now, not when its group
                        # ends: an interrupted study keeps what it decided
                        self._upsert(self._member_row(trial, k, m["status"], last=result))
            return
        # Ray's result also has a "config" (the whole param space): ours must win
        row = {**result, "study": self.study, "trial_id": trial.trial_id,
               "config": spec["name"], "seed": spec["seed"],
               "lr": spec["config"]["training"]["learning_rate"], "lr_now": result.get("lr"),
               "strata": sf.json_cell(result.get("strata"))}
        self._append_curve(row)

    def _append_curve(self, row: dict[str, Any]) -> None:
        files.append_csv(sf.curves_csv(self.study_dir), sf.CURVE_COLUMNS, row)
        self.push(sf.curves_csv(self.study_dir))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for row in self._rows(trial, "running", retries_delta=1):
            self._upsert(row)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        status = (trial.last_result or {}).get("status", "running")
        for row in self._rows(trial, "pruned" if status == "running" else status):
            self._upsert(row)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for row in self._rows(trial, "errored", error=_last_line(trial.error_file)):
            self._upsert(row)

    def _rows(self, trial: Any, status: str, error: str = "",
              retries_delta: int = 0) -> list[dict[str, Any]]:
        """The trial's row, or a fused trial's row per run: each run's own end (a run
        still running when its trial ends takes the trial's)."""
        spec = trial.config["trial"]
        if "members" not in spec:
            return [self._row(trial, status, error, retries_delta)]
        return [self._member_row(trial, k, status, error, retries_delta)
                for k in range(len(spec["members"]))]

    def _member_row(self, trial: Any, k: int, status: str, error: str = "",
                    retries_delta: int = 0, last: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
        """Run k of a fused trial: its own end, or the trial's ``status`` while it runs.
        ``last``: the trial's result to read (its last one by default)."""
        last = (trial.last_result or {}) if last is None else last
        results = last.get("members") or []
        mine = results[k] if k < len(results) and results[k] else {}
        own = mine.get("status", "running")
        run_status = own if own != "running" else status
        if run_status == "pruned" and own == "running":
            mine = {**mine, "stop_reason": "stopped with its fused trial at step "
                                           f"{mine.get('step', 0)}"}
        row_id = member_id(trial.trial_id, k)
        row = self._row(trial, run_status, error if own == "running" else "", retries_delta,
                        spec=trial.config["trial"]["members"][k], last={**last, **mine},
                        row_id=row_id)
        return {**row, "trial_id": row_id, "group": trial.trial_id}

    def _row(self, trial: Any, status: str, error: str = "", retries_delta: int = 0,
             spec: dict[str, Any] | None = None, last: dict[str, Any] | None = None,
             row_id: str | None = None) -> dict[str, Any]:
        spec = spec or trial.config["trial"]
        cfg = spec["config"]
        last = (trial.last_result or {}) if last is None else last
        previous = {r["trial_id"]: r for r in sf.read_trials(self.study_dir)}
        retries = (int(previous.get(row_id or trial.trial_id, {}).get("retries") or 0)
                   + retries_delta)
        reason = last.get("stop_reason", "")
        if status == "pruned" and not reason:
            note = self.scheduler.stop_note(trial.trial_id) if self.scheduler else None
            reason = note or (f"stopped by the scheduler at step {last.get('step', 0)} with "
                              f"exact match {last.get('exact_match', 0.0):.4f}")
        resources = trial.placement_group_factory.required_resources
        return sf.trial_row(
            study=self.study, trial_id=trial.trial_id, name=spec["name"], config=cfg,
            result={"params": spec.get("params", ""), "step": 0, **last}, status=status,
            seed=spec["seed"], stop_reason=reason, clock=spec.get("clock", spec.get("budget", "")),
            wall_seconds=round(last.get("time_total_s", 0.0), 2), node=last.get("node", ""),
            gpus=resources.get("GPU", 0), gpu_ids=last.get("gpu_ids", ""),
            cpus=resources.get("CPU", 0), retries=retries, error=error,
            suggestion=sf.json_cell(spec.get("sample")), score=last.get("search_score", ""),
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))

    def _upsert(self, row: dict[str, Any]) -> None:
        rows = {r["trial_id"]: r for r in sf.read_trials(self.study_dir)}
        old = rows.get(row["trial_id"])
        if old is not None and old["status"] in sf.FINAL_STATUSES:
            return  # a finished trial's row is kept as it is (a resumed study may replay it)
        rows[row["trial_id"]] = row
        files.write_csv(sf.trials_csv(self.study_dir), sf.TRIAL_COLUMNS, list(rows.values()))
        self.push(sf.trials_csv(self.study_dir))
