"""Loading a results folder: every study's study.json, trials.csv and curves.csv.

    results = load_results("results/")
    results.trials, results.curves   # pandas DataFrames, one row per trial / report
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from addray import names
from addray import study_files as sf
from addray.errors import DataError

NUMERIC = ["d_model", "n_layers", "n_heads", "d_ff", "params", "seed", "lr", "batch_size",
           "steps", "max_steps", "examples", "flops", "best_exact_match", "final_exact_match",
           "final_token_accuracy", "worst_stratum", "carry_boundary", "edge_cases",
           "wall_seconds", "gpus", "cpus", "retries", "score"]
CURVE_NUMERIC = ["seed", "lr", "step", "examples", "flops", "train_loss", "eval_loss",
                 "exact_match", "token_accuracy", "worst_stratum", "carry_boundary",
                 "edge_cases", "elapsed_s", "params"]


@dataclass
class Results:
    root: Path
    studies: dict[str, dict] = field(default_factory=dict)  # study.json, plus "partial"
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)


# a results folder's committed evidence (results/reference/): reported on its own, never
# mixed into the studies of the folder around it (a copy would count its trials twice)
EVIDENCE = sf.EVIDENCE


def _study_dirs(root: Path) -> list[Path]:
    if (root / "trials.csv").exists() or (root / "study.json").exists():
        # a study, with the other stages a search keeps in its folder
        inside = {p.parent for pattern in ("*/trials.csv", "*/*/trials.csv")
                  for p in root.glob(pattern)}
        return [root, *sorted(inside)]
    # shallow first: a study keeps its name, a copy deeper down is renamed after its path
    # three levels: a search's other stages sit in its folder (phase3/verification/<stage>)
    found = {p.parent for pattern in ("*/trials.csv", "*/study.json", "*/*/trials.csv",
                                      "*/*/*/trials.csv")
             for p in root.glob(pattern)}
    return sorted((d for d in found if d.relative_to(root).parts[0] != EVIDENCE),
                  key=lambda d: (len(d.parts), d))


def load_results(root: str | Path) -> Results:
    """Every study under ``root`` (or ``root`` itself if it is a study) as DataFrames."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    dirs = _study_dirs(root)
    if not dirs:
        hint = (f"; the committed evidence is reported with: python -m addray.report "
                f"{root / EVIDENCE}") if (root / EVIDENCE).is_dir() else ""
        raise DataError(f"{root}: no studies found (a study is a folder with study.json "
                        f"and trials.csv, as sweeps/*.py write them){hint}")
    results = Results(root=root)
    trial_rows, curve_rows = [], []
    for d in dirs:
        info = _study_info(d)
        name = info["study"]
        if name in results.studies:  # a copy of a study in another folder: keep apart
            name = str(d.relative_to(root)).replace("/", "-")
            info["study"] = name
        trials, curves = sf.read_trials(d), sf.read_curves(d)
        check_values(trials, sf.trials_csv(d), NUMERIC)
        check_values(curves, sf.curves_csv(d), CURVE_NUMERIC)
        for row in trials + curves:
            row["study"] = name
        running = _running_trials(curves, {r["trial_id"] for r in trials}, name)
        info["partial"] = info.get("state", "unknown") != "finished" or bool(running)
        info["path"] = str(d)
        results.studies[name] = info
        trial_rows += trials + running
        curve_rows += curves
    results.trials = _numeric(pd.DataFrame(trial_rows, columns=sf.TRIAL_COLUMNS), NUMERIC)
    results.curves = _numeric(pd.DataFrame(curve_rows), CURVE_NUMERIC)
    if not results.curves.empty:
        # a trial resumed from a checkpoint may report a step twice: keep the last report
        results.curves = results.curves.drop_duplicates(["study", "trial_id", "step"],
                                                        keep="last")
    if results.trials.empty:
        raise DataError(f"{root}: studies found but no trial has reported yet")
    return results


# the columns' rules: counts are whole numbers >= 0, scores are fractions in [0, 1],
# resources, rates and times are >= 0; a loss may be NaN (a diverged trial's); every
# number is finite
COUNTS = {"d_model", "n_layers", "n_heads", "d_ff", "params", "seed", "batch_size", "steps",
          "max_steps", "examples", "step", "retries"}
NON_NEGATIVE = {"gpus", "cpus", "lr", "flops", "wall_seconds", "elapsed_s"}
FRACTIONS = {"best_exact_match", "final_exact_match", "final_token_accuracy", "exact_match",
             "token_accuracy", "worst_stratum", "carry_boundary", "edge_cases"}
MAY_BE_NAN = {"train_loss", "eval_loss"}
STUDY_TEXT = ("study", "state", "command")  # study.json keys the report prints


def check_values(rows: list[dict[str, str]], path: Path, columns: list[str]) -> None:
    """Every number in a results file as its column's rule has it, else a DataError
    naming the file, the line and the column: a malformed value is never counted (nor
    dropped) silently."""
    for lineno, row in enumerate(rows, start=2):
        for column in columns:
            text = row.get(column)
            if text in (None, ""):
                continue
            try:
                value = float(text)
            except ValueError:
                value = None
            if value is None or _breaks(column, value):
                rule = ("a whole number >= 0" if column in COUNTS else
                        "a fraction in [0, 1]" if column in FRACTIONS else
                        "a finite number >= 0" if column in NON_NEGATIVE else "a finite number")
                raise DataError(f"{path}:{lineno}: column {column} = {text[:40]!r}: must be "
                                f"{rule}")


def _breaks(column: str, value: float) -> bool:
    if math.isnan(value):
        return column not in MAY_BE_NAN
    if math.isinf(value):
        return True
    if column in COUNTS:
        return value < 0 or value != int(value)
    if column in NON_NEGATIVE:
        return value < 0
    return column in FRACTIONS and not 0 <= value <= 1


def _study_info(d: Path) -> dict:
    """A study's study.json (a stand-in if it has none), its printed keys checked. The
    study's name is its folder's unless study.json holds a plain name: no file name is
    ever made from anything else."""
    path = d / "study.json"
    info = sf.read_study(d) or {"study": d.name, "state": "unknown"}
    for key in STUDY_TEXT:
        if key in info and not isinstance(info[key], str):
            raise DataError(f"{path}: {key} = {str(info[key])[:40]}: must be a string")
    if not names.is_name(info.get("study")):
        info["study"] = d.name
    return info


def _running_trials(curves: list[dict], known: set[str], study: str) -> list[dict]:
    """Rows for trials that reported but have no trials.csv row yet (still running)."""
    last: dict[str, dict] = {}
    for c in curves:
        if c["trial_id"] not in known:
            if c["trial_id"] not in last or int(c["step"]) >= int(last[c["trial_id"]]["step"]):
                last[c["trial_id"]] = c
    return [{"study": study, "trial_id": t, "config": c.get("config", ""),
             "seed": c.get("seed", ""), "lr": c.get("lr", ""), "params": c.get("params", ""),
             "status": "running", "steps": c["step"], "final_exact_match": c["exact_match"],
             "best_exact_match": c["exact_match"], "worst_stratum": c.get("worst_stratum", ""),
             "carry_boundary": c.get("carry_boundary", ""),
             "edge_cases": c.get("edge_cases", ""), "node": c.get("node", "")}
            for t, c in last.items()]


def _numeric(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    for c in columns:
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df
