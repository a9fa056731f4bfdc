"""A study's Tune experiment for Tune's own clients, with the study's metric as their
default: ``experiment(STUDY_DIR)`` is an ``ExperimentAnalysis`` whose
``get_best_trial()``, ``best_config`` and ``best_result`` need no arguments (Tune's
``ExperimentAnalysis(path)`` reads no default metric from the experiment; the Tuner
has one, so ``Tuner.restore(...).get_results().get_best_result()`` needs none either).

    from addray.sweep.experiment import experiment
    best = experiment("results/phase1").best_config      # {"config": ..., "lr": ...}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from addray import study_files as sf
from addray.errors import StudyError


def experiment(study_dir: str | Path) -> Any:
    """The study's ``ExperimentAnalysis``, compared on its metric (max): the search's
    objective (``search_score``) for a search, else its ``--metric``."""
    from ray.tune import ExperimentAnalysis

    study_dir = Path(study_dir)
    info = sf.read_study(study_dir)
    if not info or not (study_dir / "tune").is_dir():
        raise StudyError(f"{study_dir}: not a study with a Tune experiment (study.json and "
                         f"tune/); committed evidence has none: see python -m addray.export")
    metric = "search_score" if info.get("kind") == "search" else info.get("metric",
                                                                         "exact_match")
    return ExperimentAnalysis(str(study_dir / "tune"), default_metric=metric,
                              default_mode="max")
