"""Every trial of a study as an MLflow run (``--mlflow URI``), for the tracking UI many
researchers already run: a database (``sqlite:///mlflow.db``) or a ``mlflow server``
(``http://127.0.0.1:5000``); MLflow 3 refuses its old file store (``./mlruns``).

The study is an MLflow experiment of the same name; each trial (each run of a fused
trial) is a run named after it (``phase1_8k-s0-lr0.04``), holding:

- params: config, lr, seed, params, d_model, n_layers (``addray.sweep.flat``), and the
  resolved config as the artifact ``config.json``;
- metrics at every evaluation, against the training step: exact match, token accuracy,
  worst stratum, carry boundary, edge cases, losses, learning rate, examples/s, one per
  stratum (``strata/2-2 tokens carry``: MLflow takes no '+' or ',' in a name);
- at the end: the tags ``status`` (completed, early_stopped, pruned, diverged,
  time_limit, errored), ``stop_reason`` and ``learned``, the run's state (FINISHED,
  KILLED for a pruned run, FAILED for an errored one), and the trial's last checkpoint
  as the artifact folder ``checkpoint/``.

Runs are found again by their tag ``addray.run`` (study/trial id), so a resumed study
goes on with the same MLflow runs. MLflow is imported here only (``pip install -e
".[mlflow]"``).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from ray import tune

from addray import tb_events
from addray.sweep.flat import flat_of

RUN_TAG = "addray.run"


def metric_name(tag: str) -> str:
    """A TensorBoard tag as an MLflow metric name (letters, digits, _ - . / and space)."""
    return re.sub(r"[^\w\-. /]", "", tag.replace("+", "-"))


def _state(status: str) -> str:
    return {"errored": "FAILED", "pruned": "KILLED"}.get(status, "FINISHED")


class MlflowLog(tune.Callback):
    """Logs each trial as an MLflow run (module docstring)."""

    def __init__(self, uri: str, study: str):
        self.uri, self.study = uri, study
        self._runs: dict[tuple[str, int], str] = {}
        self._last: dict[tuple[str, int], dict[str, Any]] = {}
        self._client: Any = None
        self._experiment: str | None = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks: no client inside
        return {"uri": self.uri, "study": self.study}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["uri"], state["study"])

    def setup(self, **info: Any) -> None:
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.uri)
        found = self._client.get_experiment_by_name(self.study)
        self._experiment = (found.experiment_id if found is not None
                            else self._client.create_experiment(self.study))

    def _members(self, trial: Any) -> list[dict[str, Any]]:
        spec = trial.config["trial"]
        return spec["members"] if "members" in spec else [spec]

    def _run(self, trial: Any, k: int) -> str:
        key = (trial.trial_id, k)
        if key in self._runs:
            return self._runs[key]
        member = self._members(trial)[k]
        tag = f"{self.study}/{trial.trial_id}" + (f"-{k}" if "members" in trial.config["trial"]
                                                  else "")
        found = self._client.search_runs([self._experiment],
                                         filter_string=f"tags.`{RUN_TAG}` = '{tag}'")
        if found:  # a resumed study: the same run goes on
            run_id = found[0].info.run_id
        else:
            run = self._client.create_run(self._experiment, run_name=member["label"],
                                          tags={RUN_TAG: tag, "addray.study": self.study})
            run_id = run.info.run_id
            flat = {k2: v for k2, v in flat_of(member).items() if k2 != "study"}
            for name, value in flat.items():
                self._client.log_param(run_id, name, value)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "config.json"
                path.write_text(json.dumps(member["config"], indent=2))
                self._client.log_artifact(run_id, str(path))
        self._runs[key] = run_id
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for k in range(len(self._members(trial))):
            self._run(trial, k)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        from mlflow.entities import Metric

        if "members" in trial.config["trial"]:
            runs = [(k, m) for k, m in enumerate(result.get("members") or [])
                    if m and m.get("fresh") == result.get("step")]
        else:
            runs = [(0, result)]
        for k, metrics in runs:
            step = int(metrics.get("step", 0))
            stamp = int(float(result.get("timestamp") or 0) * 1000)
            batch = [Metric(metric_name(tag), value, stamp, step)
                     for tag, value in tb_events.scalars(metrics).items()]
            self._client.log_batch(self._run(trial, k), metrics=batch)
            self._last[(trial.trial_id, k)] = metrics

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, failed=True)

    def _end(self, trial: Any, failed: bool) -> None:
        checkpoint = trial.checkpoint.path if trial.checkpoint is not None else None
        for k in range(len(self._members(trial))):
            run_id = self._run(trial, k)
            last = self._last.pop((trial.trial_id, k), None) or trial.last_result or {}
            status = "errored" if failed else last.get("status", "running")
            if status == "running":
                status = "pruned"  # stopped by the scheduler before its trainer ended
            for name, value in (("status", status), ("stop_reason", last.get("stop_reason")),
                                ("learned", last.get("learned"))):
                if value not in (None, ""):
                    self._client.set_tag(run_id, name, str(value))
            if "members" in trial.config["trial"]:
                self._client.set_tag(run_id, "checkpoint", "in its fused trial's Tune "
                                     "checkpoint (all runs of the group in one file)")
            elif checkpoint and Path(checkpoint).is_dir():
                self._client.log_artifacts(run_id, checkpoint, "checkpoint")
            self._client.set_terminated(run_id, status=_state(status))
