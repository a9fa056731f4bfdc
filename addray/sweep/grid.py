"""Grid studies (phases 1 and 2): configs x learning rates x seeds, one trial each.

Every trial runs the shared trainer through ``addray.sweep.trainable.run_trial``. The
scheduler (``addray.sweep.scheduler``) prunes on ``--metric`` at rungs of ``--clock``
(steps, examples or FLOPs; by default examples when the configs' batch sizes differ,
so that a rung compares models after the same data); ``--compare config`` limits the
comparison to one config's learning rates and seeds. The trainer's own early stopping
ends finished or hopeless trials sooner.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from addray.core.clock import UNITS, Clock, show_budget
from addray.core.config import ExperimentConfig, load_config
from addray.core.fused import fusable
from addray.core.model import Transformer, count_parameters
from addray.errors import ConfigError
from addray.sweep.driver import StudyPlan, run_study
from addray.sweep.flat import grid_space
from addray.sweep.options import (
    SweepOptions,
    command_overrides,
    grid_of,
    no_select,
    seeds_of,
    validate,
)
from addray.sweep.scheduler import RungScheduler, rung_budgets


def build_configs(opts: SweepOptions) -> list[tuple[ExperimentConfig, float, int]]:
    """(config, learning rate, seed) of every trial, each config loaded and checked: a
    config's trials together, its learning rates in order, each rate's seeds in order."""
    overrides = command_overrides(opts)
    out = []
    named: dict[str, str] = {}
    for path in opts.configs:
        base = no_select(load_config(path, overrides), path)
        if base.name in named:  # its rows, curves and fused group would mix with the other's
            raise ConfigError(f"{path}: name = {base.name!r}: already the name of "
                              f"{named[base.name]}; every config of a study needs its own "
                              f"name")
        named[base.name] = path
        files = data_files(base, path)
        for lr in grid_of(opts, path) or [base.training.learning_rate]:
            for i in range(seeds_of(opts, path)):
                cfg = load_config(path, {**overrides, **files, "training.learning_rate": lr,
                                         "training.seed": base.training.seed + i})
                out.append((cfg, lr, cfg.training.seed))
    return out


def data_files(cfg: ExperimentConfig, path: str) -> dict[str, str]:
    """A config's data.train_file and data.test_file as absolute paths, each checked
    before Ray starts: a trial runs in a folder of its own, where a relative path would
    name nothing (and fail in every trial)."""
    out = {}
    for key in ("train_file", "test_file"):
        value = getattr(cfg.data, key)
        if value is None:
            continue
        file = Path(value).expanduser().absolute()
        if not file.is_file():
            raise ConfigError(f"{path}: data.{key} = {value!r}: no such file (a relative "
                              f"path is read from the folder the study starts in, "
                              f"{Path.cwd()})")
        out[f"data.{key}"] = str(file)
    return out


def group_by_config(config: dict) -> str:
    return config["trial"]["name"]


def is_screen(config: dict) -> bool:
    """A config's first seed: the trial that screens its learning rate."""
    return config["trial"].get("replica", 0) == 0


def unit_by_setting(config: dict) -> tuple[str, float]:
    """A config at one learning rate: its seeds are judged together."""
    spec = config["trial"]
    return spec["name"], spec["config"]["training"]["learning_rate"]


def fuse_trials(trials: list[dict], configs: list[ExperimentConfig], mode: str,
                prune: dict) -> list[dict]:
    """One trial per config holding its runs as ``members`` (``mode`` "on": every config,
    or a one-line error; "auto": the configs that can be fused, the others as they were).
    A config of one run stays a plain trial."""
    by_name: dict[str, list[int]] = {}
    for i, t in enumerate(trials):
        by_name.setdefault(t["name"], []).append(i)
    out = []
    for name, idx in by_name.items():
        why = fusable([configs[i] for i in idx])
        if why is not None and mode == "on":
            raise ConfigError(f"--fuse on: config {name}: {why}")
        if why is not None or len(idx) == 1:
            out += [trials[i] for i in idx]
            continue
        first = trials[idx[0]]
        out.append({"label": f"{name}-fused{len(idx)}", "study": first.get("study", ""),
                    "name": name, "seed": first["seed"],
                    "replica": 0, "params": first["params"], "config": first["config"],
                    "clock": first["clock"], "prune": prune,
                    "members": [trials[i] for i in idx]})
    return out


def plan_grid(opts: SweepOptions) -> StudyPlan:
    """The study's trials and scheduler, for options already validated."""
    combos = build_configs(opts)
    params = {cfg.name: count_parameters(Transformer(cfg.model)) for cfg, _, _ in combos}
    batches = {cfg.training.batch_size for cfg, _, _ in combos}
    clock = opts.clock or ("examples" if len(batches) > 1 else "steps")
    steps = [Clock.of(cfg, params[cfg.name], clock).per_step for cfg, _, _ in combos]
    grace = opts.grace_period * min(c.training.check_every * s
                                    for (c, _, _), s in zip(combos, steps, strict=True))
    top = max(c.training.max_steps * s for (c, _, _), s in zip(combos, steps, strict=True))
    rungs = rung_budgets(top, grace, opts.reduction_factor) if opts.prune else []
    prune = {"metric": opts.metric, "clock": clock, "rungs": rungs}
    first = {cfg.name: min(s for c, _, s in combos if c.name == cfg.name) for cfg, _, _ in combos}
    trials = [{"label": f"{cfg.name}-s{seed}-lr{lr:g}", "study": opts.study, "name": cfg.name,
               "seed": seed,
               "replica": seed - first[cfg.name], "params": params[cfg.name],
               "config": cfg.to_dict(), "clock": clock, "prune": prune}
              for cfg, lr, seed in combos]
    n_runs = len(trials)
    if opts.fuse != "off":
        prune = {**prune, "reduction_factor": opts.reduction_factor, "floor": opts.floor,
                 "on": opts.prune}
        trials = fuse_trials(trials, [cfg for cfg, _, _ in combos], opts.fuse, prune)
    fused = sum(1 for t in trials if "members" in t)
    if opts.prune:
        by_config = opts.compare == "config"
        # a grid's trials are all known: judge each at every rung it passed (catch-up)
        scheduler: Any = RungScheduler(
            score="prune_score", clock=clock, rungs=rungs,
            reduction_factor=opts.reduction_factor, catch_up=True,
            group=group_by_config if by_config else None, unit=unit_by_setting,
            unit_label="setting of this config" if by_config else "setting",
            floor=opts.floor, screen=(group_by_config, is_screen) if opts.screen else None)
        where = "within each config" if by_config else "across all trials"
        shown = ", ".join(show_budget(r, clock) for r in rungs) or "none (budget below grace)"
        text = f"pruning on {opts.metric} {where}, rungs at {shown}"
        if opts.floor is not None:
            text = (f"pruning on {opts.metric}: at rungs of {shown} a setting is stopped "
                    f"only below {opts.floor:g}")
        if opts.screen:
            text += ("; each config's learning rates screened on its first seed, its other "
                     "seeds run only at the rate that ended best there")
        units = {(cfg.name, lr) for cfg, lr, _ in combos}  # settings: their seeds go together
        per_config = Counter(name for name, _ in units)
        settings = min(per_config.values()) if by_config else len(units)
        if settings < opts.reduction_factor and opts.floor is None:
            # a rung keeps the best 1/rf of the settings it compares: it needs rf of them
            text += (f" (a rung compares {settings} setting(s) {where}, fewer than "
                     f"--reduction-factor {opts.reduction_factor}: none will be pruned)")
        if fused:
            text += (f"; {fused} fused trial(s) apply the same rule among their own runs")
    else:
        from ray.tune.schedulers import FIFOScheduler

        scheduler, text = FIFOScheduler(), "no pruning: every trial runs its whole budget"
    if fused:
        text += (f"; {n_runs} runs in {len(trials)} trials, {fused} of them fused (each "
                 "config's learning rates and seeds as one stacked model)")
    return StudyPlan(n_trials=len(trials), n_runs=n_runs, scheduler=scheduler, pruning=text,
                     runs_per_trial=[len(t.get("members") or [t]) for t in trials],
                     cuda_only=sorted({c.name for c, _, _ in combos
                                       if c.training.device == "cuda"}),
                     param_space=grid_space(trials), objective=opts.metric,
                     info={"kind": "grid", "clock": clock, "clock_unit": UNITS[clock],
                           "metric": opts.metric, "compare": opts.compare},
                     largest_model=max(params.values()))


def run_grid(opts: SweepOptions, trainable: Any = None) -> list[dict[str, str]]:
    """Run (or resume) a grid study; return its trials.csv rows."""
    validate(opts)
    return run_study(opts, plan_grid(opts), trainable)
