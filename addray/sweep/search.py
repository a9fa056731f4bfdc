"""Phase 3: search for the smallest transformer that adds (Optuna TPE + ASHA on Ray Tune).

Each trial's settings come from Optuna's TPE sampler (``OptunaSearch`` under a
concurrency limit) over the bounds of a search-space YAML file
(``addray.sweep.search_space``); the scheduler prunes on the objective ``search_score``
(``addray.sweep.objective``): any model above the threshold beats any below it, and
among those above, fewer parameters win. Every finished trial is also written to an
Optuna storage file, ``optuna.db`` in the study folder, which ``optuna-dashboard`` reads
while the search runs (``addray.sweep.optuna_log``). Trials are recorded like every
other study (trials.csv, with the searcher's suggestion and the score). Afterwards the
best trial's config and weights are saved as ``best.yaml``/``best.pt`` in the study
folder and the config is trained again with more seeds in the study ``<study>-seeds``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from addray import files, store
from addray import study_files as sf
from addray.core.checkpoint import FILENAME
from addray.core.clock import show_budget
from addray.core.model import Transformer, count_parameters
from addray.sweep.deadline import DeadlineLimiter  # noqa: F401 (pickled studies name it here)
from addray.sweep.driver import StudyPlan, run_study, study_lock, write_study
from addray.sweep.grid import run_grid
from addray.sweep.options import (
    CONFIRM_SUFFIX,
    SearchOptions,
    SweepOptions,
    check_state,
    command_overrides,
    validate,
)
from addray.sweep.optuna_log import STORAGE, OptunaLog
from addray.sweep.scheduler import RungScheduler, rung_budgets
from addray.sweep.search_space import OptunaSpace, SearchSpace, load_space

SMOKE_TRIALS = 4  # a search small enough to run end to end in about a minute on 2 cores
DEFAULT_TRIALS = 30


def search_space(opts: SearchOptions) -> SearchSpace:
    """The space file, with --smoke-test / --max-steps / --check-every / --set applied."""
    space = load_space(opts.space)
    extra = command_overrides(opts)
    if extra:
        space.fixed.update(extra)
        space.source = f"{space.source} with {extra}"
        space.validate()
    return space


def plan_search(opts: SearchOptions, study_dir: Path) -> StudyPlan:
    """The searcher, its space and the scheduler, for options already validated."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    space = search_space(opts)
    trials = opts.trials
    if trials is None and not opts.time_budget_s:  # a time budget alone: open-ended
        trials = SMOKE_TRIALS if opts.smoke_test else DEFAULT_TRIALS
    base = space.config_for({})
    t = base.training
    rungs = rung_budgets(t.max_steps, opts.grace_period * t.check_every,
                         opts.reduction_factor) if opts.prune else []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = 10 if trials is None else max(2, min(10, trials // 3))
    sampler = optuna.samplers.TPESampler(seed=opts.sampler_seed, n_startup_trials=startup)
    prune = {"metric": opts.metric, "clock": "steps", "rungs": rungs}
    # the Tuner names the same metric (StudyPlan.objective), for Tune's clients; Tune
    # hands it to no searcher of a define-by-run space, so the searcher names it too
    searcher = OptunaSearch(space=OptunaSpace(space, prune, opts.study), metric="search_score",
                            mode="max", sampler=sampler)
    # trials start over time, later ones better informed by TPE: judge each once per
    # rung, on arrival, never re-judge an early trial against them
    scheduler = RungScheduler(score="search_score", clock="steps", rungs=rungs,
                              reduction_factor=opts.reduction_factor, catch_up=False)
    largest = max(count_parameters(Transformer(space.config_for(c).model))
                  for c in space.model_corners())
    return StudyPlan(
        n_trials=trials or 0, scheduler=scheduler, searcher=searcher,
        max_concurrent=opts.max_concurrent, time_budget_s=opts.time_budget_s,
        pruning=f"pruning on search_score ({opts.metric}), rungs at "
              f"{', '.join(show_budget(r, 'steps') for r in rungs) or 'none'}",
        columns={"search_score": "score"}, largest_model=largest, objective="search_score",
        callbacks=[OptunaLog(str(study_dir), opts.study, space, opts.metric,
                             results=opts.results if store.is_uri(opts.results) else None)],
        info={"kind": "search", "space": str(Path(opts.space).resolve()),
              "threshold": space.threshold, "metric": opts.metric,
              "confirm_study": confirm_study(opts.study), "storage": STORAGE})


def run_search(opts: SearchOptions, trainable: Any = None) -> list[dict[str, str]]:
    """Run (or resume) a search; then save the best trial and confirm it with more seeds."""
    study_dir = validate(opts)
    if opts.finish:
        return finish_search(opts, study_dir, trainable)
    check_state(opts, study_dir)  # early, before the storage is made; again under the lock
    if opts.cpus_per_trial is None:  # as many trials at once as there are CPUs
        opts = dataclasses.replace(opts, cpus_per_trial=1.0)
    plan = plan_search(opts, study_dir)
    rows = run_study(opts, plan, trainable)
    if sf.read_study(study_dir).get("state") != "finished":
        print("addray: --resume continues the search; --finish ends it where it stands "
              "(saves the best trial so far and confirms it)")
        return rows
    conclude(opts, study_dir, rows, trainable)
    return rows


def finish_search(opts: SearchOptions, study_dir: Path,
                  trainable: Any = None) -> list[dict[str, str]]:
    """End an interrupted (or finished) search as it stands: no new trials."""
    with study_lock(opts, study_dir):
        info = check_state(opts, study_dir)
        rows = sf.read_trials(study_dir)
        if info.get("state") != "finished":
            write_study(opts, study_dir, {**info, "state": "finished",
                                          "ended_early": f"--finish after {len(rows)} trials"})
    print(f"addray: search '{opts.study}' ended with {len(rows)} finished trials")
    conclude(opts, study_dir, rows, trainable)
    return rows


def conclude(opts: SearchOptions, study_dir: Path, rows: list[dict[str, str]],
             trainable: Any = None) -> None:
    """Save the best trial's config and weights; train its config with more seeds; verify
    every seed's model (``addray.verify``) and record the verdicts in study.json."""
    best = best_row(rows)
    if best is None:
        print("addray: no trial finished; nothing to save or confirm")
        return
    models = [study_dir / "best.pt"] if save_best(opts, study_dir, best) else []
    if opts.confirm_seeds:
        models += confirm(opts, study_dir, best, trainable)
    verify_models(opts, study_dir, models)
    if store.is_uri(opts.results):  # the search's models and config go to the store too
        put = [n for n in ("best.yaml", *(m.name for m in models)) if (study_dir / n).is_file()]
        for name in put:
            store.push_file(opts.results, opts.study, study_dir / name)
        where = store.Location.parse(opts.results).child(opts.study).plain
        print(f"addray: {', '.join(put)} put in {where}/")


def _checkpoint(opts: SweepOptions, study: str, trial_id: str) -> Path | None:
    """A trial's last checkpoint in its study's Tune folder (on object storage: fetched
    into the study's local copy)."""
    study_dir = sf.study_folder(opts.results, study)
    if store.is_uri(opts.results):
        return store.checkpoint_of(opts.results, study, trial_id, study_dir)
    found = sorted((study_dir / "tune").glob(f"*_{trial_id}/checkpoint_*/{FILENAME}"))
    return found[-1] if found else None


def _copy(source: Path, target: Path) -> None:
    with files.atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def verify_models(opts: SweepOptions, study_dir: Path, models: list[Path]) -> None:
    """Run the verification protocol on each model; study.json records the verdicts."""
    from addray.core.verify import verify

    verdicts = {}
    for path in models:
        v = verify(path)
        verdicts[path.name] = {"learned": v.learned, "reasons": v.reasons,
                               "uniform": v.uniform.rate,
                               "worst_stratum": min(r.rate for r in v.strata),
                               "carry_boundary": min((r.rate for r in v.boundary),
                                                     default=1.0),
                               "edge_cases": sum(ok for *_, ok in v.edge) / len(v.edge)}
        print(f"addray: verify {path}: {'learned' if v.learned else 'NOT learned'}"
              + (f" ({'; '.join(v.reasons)})" if v.reasons else ""))
    if verdicts:
        write_study(opts, study_dir, {**sf.read_study(study_dir), "verified": verdicts})


def confirm_study(study: str) -> str:
    return study + CONFIRM_SUFFIX


best_row = sf.best_search_row  # the trial the search saves and confirms


def save_best(opts: SweepOptions, study_dir: Path, best: dict[str, str]) -> bool:
    """best.yaml (the trial's resolved config) and best.pt (its last checkpoint); False
    if the trial left no checkpoint."""
    cfg = json.loads(best["resolved_config"])
    # named after its search (configs/smallest.yaml is another model)
    cfg["name"] = f"{best['study']}-best"
    header = (f"# best trial of search '{best['study']}' ({best['trial_id']}): "
              f"{int(best['params']):,} parameters, exact match "
              f"{float(best['final_exact_match']):.2%} at step {best['steps']}\n")
    files.write_text(study_dir / "best.yaml", header + yaml.safe_dump(cfg, sort_keys=False))
    found = _checkpoint(opts, opts.study, best["trial_id"])
    if found is None:
        print(f"addray: best trial {best['trial_id']} left no checkpoint; saved its config "
              f"only ({study_dir / 'best.yaml'})")
        return False
    _copy(found, study_dir / "best.pt")
    print(f"addray: best trial {best['config']} ({int(best['params']):,} params, "
          f"{float(best['final_exact_match']):.2%}): {study_dir / 'best.yaml'}, "
          f"{study_dir / 'best.pt'}")
    return True


def confirm(opts: SearchOptions, study_dir: Path, best: dict[str, str],
            trainable: Any = None) -> list[Path]:
    """Train the best config again with ``confirm_seeds`` new seeds (a grid study with no
    pruning: every seed runs its whole budget); copy each seed's final model to
    ``seed<N>.pt`` in the search's folder and return their paths."""
    name = confirm_study(opts.study)
    seeds = SweepOptions(
        study=name, configs=[str(study_dir / "best.yaml")], seeds=opts.confirm_seeds,
        results=opts.results if store.is_uri(opts.results) else str(study_dir.parent),
        gpus=opts.gpus, gpus_per_trial=opts.gpus_per_trial,
        cpus_per_trial=opts.cpus_per_trial, address=opts.address, metric=opts.metric,
        # seeds after the searched one
        overrides={"training.seed": int(best["seed"]) + 1}, prune=False,
        max_failures=opts.max_failures,
        resume=bool(sf.read_study(sf.study_folder(opts.results, name))),
        num_cpus=opts.num_cpus, num_gpus=opts.num_gpus, command=opts.command)
    print(f"addray: confirming {best['config']} with {opts.confirm_seeds} more seeds "
          f"(study '{name}')")
    models = []
    for row in run_grid(seeds, trainable):
        found = _checkpoint(seeds, name, row["trial_id"])
        if found is not None and row["status"] in sf.FINAL_STATUSES:
            models.append(study_dir / f"seed{row['seed']}.pt")
            _copy(found, models[-1])
    return models
