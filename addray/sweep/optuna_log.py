"""The search's history in an Optuna storage file (``optuna.db`` in the study folder),
so that ``optuna-dashboard sqlite:///RESULTS/STUDY/optuna.db`` shows it while the search
runs and after: trials, parameter importance, parallel coordinates.

A Tune callback writes every finished trial into it (its suggestion, the objective's
score, and the trial's exact match, worst stratum, parameters and status as user
attributes). The searcher keeps its own state, which Tune saves and restores with the
experiment: letting ``OptunaSearch`` write to this file itself breaks ``--resume``
after a driver is killed, because the file is then ahead of the searcher's last saved
state (a trial it still thinks running is already finished there). Each trial is
written once, under its Tune trial id, so a resumed search goes on adding to the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from ray import tune

from addray.sweep.search_space import SearchSpace

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


class OptunaLog(tune.Callback):
    """Writes each finished trial of a search into the study's Optuna storage file."""

    def __init__(self, study_dir: str, study: str, space: SearchSpace):
        self.url, self.study = storage_url(Path(study_dir)), study
        self.distributions = distributions(space)

    def _optuna_study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.create_study(storage=self.url, study_name=self.study,
                                   direction="maximize", load_if_exists=True)

    def setup(self, **info: Any) -> None:
        self._optuna_study()  # the file exists from the start, for the dashboard

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, optuna.trial.TrialState.COMPLETE)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, optuna.trial.TrialState.FAIL)

    def _write(self, trial: Any, state: Any) -> None:
        spec, last = trial.config["trial"], trial.last_result or {}
        study = self._optuna_study()
        if any(t.user_attrs.get("tune_trial_id") == trial.trial_id for t in study.trials):
            return  # written before a resume
        score = last.get("search_score")
        if score is None:
            state = optuna.trial.TrialState.FAIL
        attrs = {"tune_trial_id": trial.trial_id, "config": spec["name"],
                 "status": last.get("status", ""), "params": last.get("params"),
                 "exact_match": last.get("exact_match"),
                 "worst_stratum": last.get("worst_stratum"),
                 "carry_boundary": last.get("carry_boundary"),
                 "edge_cases": last.get("edge_cases"), "step": last.get("step")}
        study.add_trial(optuna.trial.create_trial(
            params=spec["sample"], distributions=self.distributions, state=state,
            value=score if state == optuna.trial.TrialState.COMPLETE else None,
            user_attrs={k: v for k, v in attrs.items() if v is not None}))
