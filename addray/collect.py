"""``python -m addray.collect RUN... --study NAME``: runs of ``python -m addray.train``
gathered into a study folder, so that ``python -m addray.report`` shows them beside the
studies the sweeps ran (a search's stage when the folder sits inside the search's).

Each RUN is a folder a finished ``addray.train --out RUN`` wrote (its ``metrics.json``);
it becomes one row of trials.csv (trial id: the folder's name) and its evaluations rows
of curves.csv. No torch and no Ray here: only the JSON the trainer wrote is read.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

from addray import cli, files
from addray import study_files as sf
from addray.errors import DataError, StudyError

METRICS = "metrics.json"


def parse_args(argv: list[str] | None = None):
    p = cli.Parser(
        prog="python -m addray.collect",
        description="Gather finished runs of python -m addray.train into one study folder "
                    "(study.json, trials.csv, curves.csv) that python -m addray.report "
                    "reads like a sweep's. A study already there is never replaced.")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a folder written by python -m addray.train --out RUN")
    p.add_argument("--study", required=True, help="name of the study folder to write")
    p.add_argument("--results", default="results",
                   help="folder that holds the study (default: results)")
    p.add_argument("--config", metavar="LABEL",
                   help="the config column of every run, e.g. when runs of one recipe were "
                        "trained under different names (default: each run's config name)")
    return p.parse_args(argv)


def read_run(folder: str | Path) -> dict[str, Any]:
    """A run's metrics.json, checked for what a trial row needs."""
    path = Path(folder) / METRICS
    if not path.is_file():
        raise DataError(f"{path}: no such file (a RUN is a folder that a finished "
                        f"python -m addray.train --out RUN wrote)")
    run = files.read_json_object(path)
    for key, kind in (("name", str), ("status", str), ("config", dict), ("history", list)):
        if not isinstance(run.get(key), kind):
            raise DataError(f"{path}: {key} = {_show(run.get(key))}: must be a "
                            f"{kind.__name__} (is this addray.train's metrics.json?)")
    for section in ("model", "training"):
        if not isinstance(run["config"].get(section), dict):
            raise DataError(f"{path}: config.{section} is missing")
    return run


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."



def trial_row(study: str, trial_id: str, run: dict[str, Any], finished_at: str) -> dict:
    """One trials.csv row; ``run`` as read_run returns it (its "name" is the label)."""
    last = run["history"][-1] if run["history"] else {}
    summary = {key: run.get(key, "") for key in (
        "params", "best_exact_match", "worst_stratum", "carry_boundary", "edge_cases",
        "learned", "strata", "machine", "device")}
    result = {**last, **summary, "step": run.get("steps", last.get("step", "")),
              "exact_match": run.get("final_exact_match", ""),
              "token_accuracy": run.get("final_token_accuracy", "")}
    return sf.trial_row(
        study=study, trial_id=trial_id, name=run["name"], config=run["config"], result=result,
        status=run["status"], stop_reason=run.get("stop_reason", ""),
        # training time over every resume (a resumed run's wall_seconds is its last part)
        wall_seconds=round(float(run.get("train_seconds", run.get("wall_seconds", 0))), 2),
        gpus=1 if str(run.get("device", "")).startswith("cuda") else 0,
        cpus=run.get("threads", ""), finished_at=finished_at)


def curve_rows(study: str, trial_id: str, run: dict[str, Any]) -> list[dict]:
    training = run["config"]["training"]
    return [{**{k: h.get(k, "") for k in sf.CURVE_COLUMNS}, "study": study,
             "trial_id": trial_id, "config": run["name"], "seed": training.get("seed", ""),
             "lr": training.get("learning_rate", ""), "params": h.get("params", ""),
             "strata": sf.json_cell(h.get("strata")), "lr_now": h.get("lr", "")}
            for h in run["history"] if isinstance(h, dict)]


def collect(runs: list[str], study: str, results: str | Path, command: str = "",
            label: str | None = None) -> Path:
    """Write RESULTS/STUDY from the runs; returns the study folder. ``label``, if given,
    replaces each run's config name in the config column."""
    folder = sf.study_folder(results, study)
    if sf.trials_csv(folder).exists() or (folder / "study.json").exists():
        raise StudyError(f"{folder}: already holds a study; pick another --study (a study "
                         f"is never replaced)")
    ids: dict[str, str] = {}
    trials, curves = [], []
    for run_dir in runs:
        trial_id = Path(run_dir).resolve().name
        if trial_id in ids:
            raise StudyError(f"{run_dir}: has the same folder name as {ids[trial_id]} (the "
                             f"folder's name is the trial id; rename one)")
        ids[trial_id] = run_dir
        run = read_run(run_dir)
        if label:
            run["name"] = label
        # as the run recorded it; runs from before it did: when metrics.json was written
        done = run.get("finished_at") or time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.localtime((Path(run_dir) / METRICS).stat().st_mtime))
        trials.append(trial_row(study, trial_id, run, done))
        curves += curve_rows(study, trial_id, run)
    folder.mkdir(parents=True, exist_ok=True)
    files.write_csv(sf.curves_csv(folder), sf.CURVE_COLUMNS, curves)
    files.write_csv(sf.trials_csv(folder), sf.TRIAL_COLUMNS, trials)
    sf.write_study(folder, {"study": study, "kind": "runs", "command": command,
                            "state": "finished", "trials": len(trials),
                            "runs": [str(r) for r in runs]})
    return folder


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "addray.collect", *(argv or [])])
    folder = collect(args.runs, args.study, args.results, command, args.config)
    print(f"wrote {folder}/ (study.json, trials.csv, curves.csv) from {len(args.runs)} "
          f"run(s); python -m addray.report {folder} reports it")
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
