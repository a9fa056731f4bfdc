"""Phase 3: search for the smallest transformer that adds (Optuna TPE + ASHA on Ray Tune).

Each trial's settings come from Optuna's TPE sampler (``OptunaSearch`` under a
``ConcurrencyLimiter``) over the bounds in a search-space YAML file
(``addray.search_space``); ASHA prunes on the objective ``search_score``: any model
at or above the exact-match threshold beats any below it, and among those above,
fewer parameters win. Trials are recorded like every other study (trials.csv, with
the searcher's suggestion and the score). Afterwards the best trial's config and
weights are saved as ``best.yaml``/``best.pt`` in the study folder and the config is
trained again with more seeds in the study ``<study>-seeds``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ray.tune.search import ConcurrencyLimiter, Searcher

from addray import study_files as sf
from addray.checkpoint import FILENAME
from addray.scheduler import asha
from addray.search_space import SearchSpace, load_space
from addray.sweep import (
    SweepError,
    SweepOptions,
    _trial_dirname,
    _trial_name,
    command_overrides,
    run_config,
    run_study,
    run_sweep,
)


class DeadlineLimiter(ConcurrencyLimiter):
    """A ConcurrencyLimiter that stops suggesting once ``budget_s`` seconds have passed
    since its first suggestion: running trials then finish normally and are recorded
    (Tune's own time_budget_s cuts them off without a trials.csv row)."""

    def __init__(self, searcher: Any, max_concurrent: int, budget_s: float | None):
        super().__init__(searcher, max_concurrent=max_concurrent)
        self.budget_s = budget_s
        self.started: float | None = None

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.started = None  # the budget counts per run: a resumed search gets it anew

    def suggest(self, trial_id: str) -> Any:
        if self.started is None:
            self.started = time.time()
        if self.budget_s is not None and time.time() - self.started >= self.budget_s:
            return Searcher.FINISHED
        return super().suggest(trial_id)


# a search small enough to run end to end in about a minute on 2 CPU cores
SMOKE_TRIALS = 4


@dataclass
class SearchOptions(SweepOptions):
    configs: list[str] = field(default_factory=list)  # unused: the space names its base
    space: str = "configs/phase3_search.yaml"
    trials: int | None = None  # None with no time budget: DEFAULT_TRIALS
    time_budget_s: float | None = None  # stop suggesting new trials after this long
    max_concurrent: int | None = None  # None: as many as the resources allow
    sampler_seed: int = 0
    confirm_seeds: int = 2  # more seeds for the best config afterwards (0: none)
    finish: bool = False  # end an existing search where it stands: save the best, confirm


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


def run_search(opts: SearchOptions) -> list[dict[str, str]]:
    """Run (or resume) a search; then save the best trial and confirm it with more seeds."""
    for flag, value in (("--trials", opts.trials), ("--time-budget", opts.time_budget_s),
                        ("--max-concurrent", opts.max_concurrent)):
        if value is not None and value <= 0:
            raise SweepError(f"{flag} = {value:g}: must be > 0")
    if opts.confirm_seeds < 0:
        raise SweepError(f"--confirm-seeds = {opts.confirm_seeds}: must be >= 0")
    if opts.finish:
        return finish_search(opts)
    space = search_space(opts)
    trials = opts.trials
    if trials is None and not opts.time_budget_s:  # a time budget alone: open-ended
        trials = SMOKE_TRIALS if opts.smoke_test else DEFAULT_TRIALS
    base = space.config_for({})
    max_steps, check_every = base.training.max_steps, base.training.check_every

    def make_tuner(tune: Any, trainable: Any, study_dir: Path, max_concurrent: int | None,
                   recorder: Any, slots: int) -> Any:
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        from addray.search_space import OptunaSpace

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        startup = 10 if trials is None else max(2, min(10, trials // 3))
        sampler = optuna.samplers.TPESampler(seed=opts.sampler_seed, n_startup_trials=startup)
        searcher = OptunaSearch(space=OptunaSpace(space), metric="search_score", mode="max",
                                sampler=sampler)
        # TPE learns from finished trials: run no more at once than the resources allow
        limit = min(x for x in (opts.max_concurrent, slots, trials) if x)
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=DeadlineLimiter(searcher, limit, opts.time_budget_s),
                # trials start over time, later ones better informed by TPE: judge each
                # once per rung (Tune's ASHA), never re-judge an early trial against them
                scheduler=asha("search_score", max_steps, check_every, opts.grace_period,
                               opts.reduction_factor, catch_up=False),
                num_samples=trials if trials is not None else -1, reuse_actors=True,
                trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
            run_config=run_config(tune, opts, study_dir, recorder, {"search_score": "score"}))

    info = {"kind": "search", "space": str(Path(opts.space).resolve()),
            "threshold": space.threshold, "confirm_study": confirm_study(opts.study)}
    if opts.cpus_per_trial is None:  # as many trials at once as there are CPUs
        opts = dataclasses.replace(opts, cpus_per_trial=1.0)
    rows = run_study(opts, trials or 0, max_steps, check_every, make_tuner,
                     extra_info=info, time_budget_s=opts.time_budget_s)
    study_dir = Path(opts.results).expanduser().resolve() / opts.study
    if sf.read_study(study_dir).get("state") != "finished":
        print("addray: --resume continues the search; --finish ends it where it stands "
              "(saves the best trial so far and confirms it)")
        return rows
    conclude(opts, study_dir, rows)
    return rows


def finish_search(opts: SearchOptions) -> list[dict[str, str]]:
    """End an interrupted (or finished) search as it stands: no new trials."""
    study_dir = Path(opts.results).expanduser().resolve() / opts.study
    if not (study_dir / "study.json").exists():
        raise SweepError(f"{study_dir}: no search to finish (run without --finish first)")
    info = sf.read_study(study_dir)
    if info.get("kind") != "search":
        raise SweepError(f"{study_dir}: study '{opts.study}' is not a search")
    rows = sf.read_csv(study_dir / "trials.csv")
    if info.get("state") != "finished":
        sf.write_study(study_dir, {**info, "state": "finished",
                                   "ended_early": f"--finish after {len(rows)} trials"})
    print(f"addray: search '{opts.study}' ended with {len(rows)} finished trials")
    conclude(opts, study_dir, rows)
    return rows


def conclude(opts: SearchOptions, study_dir: Path, rows: list[dict[str, str]]) -> None:
    """Save the best trial's config and weights; train its config with more seeds."""
    best = best_row(rows)
    if best is None:
        print("addray: no trial finished; nothing to save or confirm")
        return
    save_best(study_dir, best)
    if opts.confirm_seeds:
        confirm(opts, study_dir, best)


def confirm_study(study: str) -> str:
    return f"{study}-seeds"


def best_row(rows: list[dict[str, str]]) -> dict[str, str] | None:
    """The trial with the highest objective score (fewest parameters at >= threshold)."""
    scored = [r for r in rows if r.get("score") not in (None, "")]
    if not scored:
        return None
    return max(scored, key=lambda r: (float(r["score"]), -int(r["params"] or 0)))


def save_best(study_dir: Path, best: dict[str, str]) -> None:
    """best.yaml (the trial's resolved config) and best.pt (its last checkpoint)."""
    cfg = json.loads(best["resolved_config"])
    cfg["name"] = "smallest"
    header = (f"# best trial of search '{best['study']}' ({best['trial_id']}): "
              f"{int(best['params']):,} parameters, exact match "
              f"{float(best['final_exact_match']):.2%} at step {best['steps']}\n")
    sf.write_atomic(study_dir / "best.yaml", header + yaml.safe_dump(cfg, sort_keys=False))
    found = sorted((study_dir / "tune").glob(f"*_{best['trial_id']}/checkpoint_*/{FILENAME}"))
    if found:
        shutil.copyfile(found[-1], study_dir / "best.pt")
        print(f"addray: best trial {best['config']} ({int(best['params']):,} params, "
              f"{float(best['final_exact_match']):.2%}): {study_dir / 'best.yaml'}, "
              f"{study_dir / 'best.pt'}")
    else:
        print(f"addray: best trial {best['trial_id']} left no checkpoint; saved its config "
              f"only ({study_dir / 'best.yaml'})")


def confirm(opts: SearchOptions, study_dir: Path, best: dict[str, str]) -> None:
    """Train the best config again with ``confirm_seeds`` new seeds (a plain sweep)."""
    name = confirm_study(opts.study)
    results = Path(opts.results).expanduser().resolve()
    seeds = SweepOptions(
        study=name, configs=[str(study_dir / "best.yaml")], seeds=opts.confirm_seeds,
        results=str(results), gpus=opts.gpus, gpus_per_trial=opts.gpus_per_trial,
        cpus_per_trial=opts.cpus_per_trial, address=opts.address,
        # seeds after the searched one (0), pruning off: every seed runs its full budget
        overrides={"training.seed": int(best["seed"]) + 1}, grace_period=10**6,
        max_failures=opts.max_failures, resume=(results / name / "study.json").exists(),
        num_cpus=opts.num_cpus, num_gpus=opts.num_gpus, command=opts.command,
        trainable=opts.trainable)
    print(f"addray: confirming {best['config']} with {opts.confirm_seeds} more seeds "
          f"(study '{name}')")
    run_sweep(seeds)
