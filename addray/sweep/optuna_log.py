"""The search's history in an Optuna storage file (``optuna.db`` in the study folder),
so that ``optuna-dashboard sqlite:///RESULTS/STUDY/optuna.db`` shows it while the search
runs and after: trials, parameter importance, parallel coordinates.

A Tune callback writes every finished trial into it: its suggestion; as the value, the
study's ``--metric`` (exact match or worst stratum, 0-1, named so in the dashboard) at
the trial's end, and every evaluation of it as an intermediate value; PRUNED for a
trial the scheduler stopped, FAIL for an errored one; its real start and end; the
searcher's own objective (``search_score``: the threshold first, then fewer parameters),
parameters, exact match, worst stratum and status as user attributes. The value is the
metric and not the searcher's objective, which reads as noise (3.4e-07 for a model at
0%); nor is the parameter count a second objective, since Optuna keeps intermediate
values and pruning for single-objective studies only.

The searcher keeps its own state, which Tune saves and restores with the experiment:
letting ``OptunaSearch`` write to this file itself breaks ``--resume`` after a driver is
killed, because the file is then ahead of the searcher's last saved state (a trial it
still thinks running is already finished there). Each trial is
written once, under its Tune trial id, so a resumed search goes on adding to the file.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any

import optuna
from ray import tune

from addray import study_files as sf
from addray.sweep.search_space import SearchSpace
from addray.sweep.study_callback import StudyFiles

STORAGE = "optuna.db"


def storage_url(study_dir: Path) -> str:
    return f"sqlite:///{Path(study_dir) / STORAGE}"


def distributions(space: SearchSpace) -> dict[str, Any]:
    """Optuna's description of each searched setting."""
    out: dict[str, Any] = {}
    for d in space.dimensions:
        if d.choices is not None:
            out[d.name] = optuna.distributions.CategoricalDistribution(list(d.choices))
        elif d.kind is int:
            out[d.name] = optuna.distributions.IntDistribution(int(d.low), int(d.high),
                                                               log=d.log)
        else:
            out[d.name] = optuna.distributions.FloatDistribution(d.low, d.high, log=d.log)
    return out


class OptunaLog(StudyFiles, tune.Callback):
    """Writes each finished trial of a search into the study's Optuna storage file."""

    def __init__(self, study_dir: str, study: str, space: SearchSpace,
                 metric: str = "exact_match", results: str | None = None):
        self.study = study
        self._study_dir = str(study_dir)
        self.distributions = distributions(space)
        self.metric = metric
        self.results = results  # on object storage: its URI (the folder is a local copy)

    @property
    def url(self) -> str:
        return storage_url(Path(self.study_dir))

    def _optuna_study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(storage=self.url, study_name=self.study,
                                    direction="maximize", load_if_exists=True)
        if study.metric_names is None:
            study.set_metric_names([self._metric()])
        return study

    def _metric(self) -> str:
        return getattr(self, "metric", "exact_match")  # pickled by an older version

    def setup(self, **info: Any) -> None:
        self._optuna_study()  # the file exists from the start, for the dashboard
        self.push(self.study_dir / STORAGE)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # a trial Tune ends while its trainer still runs was stopped by the scheduler
        ended = (trial.last_result or {}).get("status", "running") != "running"
        self._write(trial, optuna.trial.TrialState.COMPLETE if ended
                    else optuna.trial.TrialState.PRUNED)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, optuna.trial.TrialState.FAIL)

    def _write(self, trial: Any, state: Any) -> None:
        spec, last = trial.config["trial"], trial.last_result or {}
        study = self._optuna_study()
        if any(t.user_attrs.get("tune_trial_id") == trial.trial_id for t in study.trials):
            return  # written before a resume
        metric = self._metric()
        value = last.get(metric)
        if value is None or last.get("search_score") is None:
            state = optuna.trial.TrialState.FAIL
        attrs = {"tune_trial_id": trial.trial_id, "config": spec["name"],
                 "status": last.get("status", ""), "params": last.get("params"),
                 "search_score": last.get("search_score"),
                 "exact_match": last.get("exact_match"),
                 "worst_stratum": last.get("worst_stratum"),
                 "carry_boundary": last.get("carry_boundary"),
                 "edge_cases": last.get("edge_cases"), "step": last.get("step")}
        end = datetime.datetime.now()
        took = float(last.get("time_total_s") or 0.0)
        study.add_trial(optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=state,  # both renumbered by the storage
            value=value if state == optuna.trial.TrialState.COMPLETE else None,
            datetime_start=end - datetime.timedelta(seconds=took), datetime_complete=end,
            params=spec["sample"], distributions=self.distributions,
            user_attrs={k: v for k, v in attrs.items() if v is not None}, system_attrs={},
            intermediate_values=self._reports(trial.trial_id, metric)))
        self.push(self.study_dir / STORAGE)

    def _reports(self, trial_id: str, metric: str) -> dict[int, float]:
        """The trial's every evaluation of ``metric`` by step, from curves.csv (which a
        resumed search keeps, unlike this callback's memory)."""
        out = {}
        for row in sf.read_curves(Path(self.study_dir)):
            if row.get("trial_id") == trial_id and row.get(metric) not in (None, ""):
                value = float(row[metric])
                if math.isfinite(value):
                    out[int(row["step"])] = value
        return out
