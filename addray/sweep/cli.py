"""The command line shared by the study scripts in sweeps/. No Ray at import: a local
study selects loopback before Ray is first imported (``cluster.prefer_loopback``).

A grid script offers named sets of configs (``Preset``): which config files, with which
recipe (config overrides), learning-rate grid, comparison and seeds. Explicit options
(--lr, --seeds, --compare, --set, --max-steps) take precedence over a preset's values.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from addray import cli
from addray import study_files as sf
from addray.core.clock import CLOCKS
from addray.errors import ConfigError
from addray.sweep import cluster
from addray.sweep.options import COMPARE, METRICS, SweepOptions, command_line


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas, "
                                         f"e.g. 1e-4,1e-3,3e-3") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: learning rates must be > 0 and <= 1")
    if len(values) > 20:
        raise argparse.ArgumentTypeError(f"{text!r}: at most 20 learning rates")
    return values


@dataclass
class Preset:
    """A named set of configs for a grid script, and how to run it."""

    configs: list[str]
    about: str
    lrs: list[float] | None = None  # None: each config's own learning rate
    # a grid per config (file name without .yaml -> rates), for configs whose best rates
    # differ; those it does not name use ``lrs``
    config_lrs: dict[str, list[float]] = field(default_factory=dict)
    screen: bool = False  # the rates on the first seed, the other seeds at the best one
    floor: float | None = None  # rungs stop only settings below this score (None: ASHA)
    grace_period: int = 2  # evaluations before the first rung
    overrides: dict[str, Any] = field(default_factory=dict)
    compare: str = "all"
    seeds_gpu: int = 1  # seeds when the study runs on GPUs
    seeds_cpu: int = 1  # and on CPUs
    # seeds per config on CPUs (file name without .yaml -> count), for the configs that
    # need fewer there; --seeds, and a study on GPUs, give every config the same count
    config_seeds_cpu: dict[str, int] = field(default_factory=dict)


def parser(study: str, description: str, presets: dict[str, Preset] | None = None
           ) -> argparse.ArgumentParser:
    """The options every study script shares; ``presets`` (a grid script's named config
    sets, the first the default) adds --configs, --seeds, --lr and --compare."""
    p = cli.Parser(description=description,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to run")
    g.add_argument("--study", default=study,
                   help="study name: results go to RESULTS/STUDY/ (default: %(default)s)")
    if presets:
        g.add_argument("--configs", default=next(iter(presets)),
                       help="a named set: " + "; ".join(f"{k}: {v.about}"
                                                      for k, v in presets.items())
                       + "; or YAML files separated by commas (default: %(default)s)")
        g.add_argument("--seeds", type=cli.bounded(int, 1, 100), help="seeds per config and "
                       "learning rate (default: the set's; 3 on GPUs, 1 on CPUs for the "
                       "scaling sets)")
        g.add_argument("--lr", type=_floats, help="learning-rate grid, e.g. 1e-4,1e-3,3e-3 "
                       "(default: the set's grid, or each config's own)")
        g.add_argument("--screen", action=argparse.BooleanOptionalAction, default=None,
                       help="train each config's learning rates on its first seed, then its "
                       "other seeds only at the rate that ended best there (the others are "
                       "pruned before they start, named in trials.csv); default: the set's")
        g.add_argument("--fuse", choices=["auto", "on", "off"], default="off",
                       help="train each config's learning rates and seeds as one stacked "
                       "model in one trial (one Tune trial per config, one trials.csv row per "
                       "run); auto: where the study runs on GPUs, compares within configs "
                       "and holds no screen (on a CPU fusing measured no faster). Off by "
                       "default until fused trials are measured on a GPU")
    g.add_argument("--max-steps", type=cli.bounded(int, 1, 10**9),
                   help="override training.max_steps of every config")
    g.add_argument("--check-every", type=cli.bounded(int, 1, 10**9),
                   help="override training.check_every (steps between evaluations)")
    g.add_argument("--set", dest="overrides", type=cli.setting, action="append", default=[],
                   metavar="KEY=VALUE", help="override any config key, e.g. "
                   "training.batch_size=128 (repeatable)")
    g.add_argument("--dry-run", action="store_true",
                   help="check the options and every config, print the study's plan (trials, "
                   "pruning) and exit, without starting Ray")
    g.add_argument("--smoke-test", action="store_true",
                   help="tiny budgets and data, one learning rate and one seed: the whole "
                   "path in about a minute on a CPU")
    r = p.add_argument_group("resources and cluster")
    r.add_argument("--gpus", type=cli.bounded(float, 0, 1024), help="GPUs the study may use "
                   "(default: all the cluster has; 0 runs on CPU)")
    r.add_argument("--gpus-per-trial", type=cli.bounded(float, 1e-3, 64), help="GPUs per "
                   "trial; fractions pack several trials on one GPU (default: the packing "
                   "rule in addray/sweep/resources.py, 0.25)")
    r.add_argument("--cpus-per-trial", type=cli.bounded(float, 1e-3, 4096), help="CPUs per "
                   "trial = torch threads (default: a node's CPUs shared evenly among the "
                   "trials it runs at once)")
    r.add_argument("--address", help="join an existing Ray cluster (auto or HOST:PORT); "
                   "default: start a local Ray on loopback for this study")
    r.add_argument("--dashboard", action="store_true", help="start the Ray dashboard "
                   "(local Ray only) and print its URL")
    r.add_argument("--dashboard-host", default="127.0.0.1", help="interface the dashboard "
                   "binds to; keep 127.0.0.1 and use an SSH tunnel (default: %(default)s)")
    r.add_argument("--mlflow", metavar="URI", help="log every trial as a run in this MLflow "
                   "tracking store (a mlflow server's http://HOST:PORT, or "
                   "sqlite:///mlflow.db), in the experiment named after the study; fixed "
                   "when the study starts")
    s = p.add_argument_group("pruning, failures, results")
    s.add_argument("--metric", choices=METRICS, default="exact_match", help="what pruning "
                   "compares: uniform held-out exact match, or the weakest stratum's "
                   "(default: %(default)s)")
    s.add_argument("--clock", "--budget", dest="clock", choices=CLOCKS, help="what the pruning "
                   "rungs count: steps, examples or flops (default: examples when "
                   "the configs' batch sizes differ, else steps)")
    if presets:
        s.add_argument("--compare", choices=COMPARE, help="prune against all trials, or only "
                       "against trials of the same config (its learning rates and seeds); "
                       "default: the set's")
    if presets:
        s.add_argument("--floor", type=cli.bounded(float, 0, 0.999), help="instead of "
                       "comparing settings at a rung, stop only those whose mean score "
                       "there is below this (e.g. 0.001: not yet learning); default: the "
                       "set's, else ASHA's comparison")
    s.add_argument("--no-prune", dest="prune", action="store_false",
                   help="no pruning: every trial runs its whole budget")
    s.add_argument("--grace-period", type=cli.bounded(int, 1, 10**6),
                   help="evaluations before a trial may be pruned (default: the set's, "
                   "else 2)")
    s.add_argument("--reduction-factor", type=cli.bounded(int, 2, 100), default=3,
                   help="keep the best 1/N at each rung (default: %(default)s)")
    s.add_argument("--max-failures", type=cli.bounded(int, 0, 100), default=2,
                   help="retries of a crashed trial from its last checkpoint "
                   "(default: %(default)s)")
    s.add_argument("--results", default="results", help="results folder (default: %(default)s)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted study: "
                   "finished trials are kept, unfinished ones resume from their checkpoints")
    return p


def common_options(args: argparse.Namespace) -> dict[str, Any]:
    """SweepOptions fields from the shared options."""
    return dict(
        study=args.study, results=args.results, gpus=args.gpus,
        gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
        address=args.address, max_steps=args.max_steps, check_every=args.check_every,
        overrides=dict(args.overrides), metric=args.metric, clock=args.clock,
        prune=args.prune, grace_period=args.grace_period or 2,
        reduction_factor=args.reduction_factor, max_failures=args.max_failures,
        resume=args.resume, dashboard=args.dashboard, dashboard_host=args.dashboard_host,
        mlflow=args.mlflow, smoke_test=args.smoke_test, command=command_line())


def exit_code(rows: list[dict[str, str]], state: str | None = None) -> int:
    """The exit status of a study whose files are all written: 130 when it was interrupted
    (Ctrl-C; ``--resume`` continues it), as for any interrupted command, so a chained
    ``&& python -m addray.report`` does not run on half a study; 1 when no trial ended or
    some errored; else 0. ``state`` is study.json's."""
    if state == "interrupted":
        return 130
    if not rows or any(r["status"] == "errored" for r in rows):
        return 1
    return 0


def study_exit_code(opts: SweepOptions, rows: list[dict[str, str]]) -> int:
    """``exit_code`` for the study ``opts`` names, its state read back from study.json."""
    return exit_code(rows, sf.read_study(sf.study_folder(opts.results, opts.study))
                     .get("state"))


def on_gpus(args: argparse.Namespace) -> bool:
    """Whether a study will run its trials on GPUs (decides the default seeds)."""
    if args.gpus is not None:
        return args.gpus > 0
    if args.address is not None:
        return True  # a cluster: the GPU cluster this tool is made for
    import torch

    return torch.cuda.is_available()


def grid_options(args: argparse.Namespace, presets: dict[str, Preset]) -> SweepOptions:
    """SweepOptions for a grid script: the chosen set, then the explicit options."""
    common = common_options(args)
    preset = presets.get(args.configs)
    if preset is None:
        files = [f.strip() for f in args.configs.split(",") if f.strip()]
        missing = [f for f in files if not Path(f).is_file()]
        if not files or missing:
            raise ConfigError(f"--configs {args.configs}: not a named set "
                              f"({', '.join(presets)}) nor existing YAML files"
                              + (f" (no such file: {missing[0]})" if missing else ""))
        preset = Preset(configs=files, about="")
    seeds = args.seeds or (preset.seeds_gpu if on_gpus(args) else preset.seeds_cpu)
    lrs = args.lr or preset.lrs
    config_lrs = {} if args.lr else preset.config_lrs
    config_seeds = {} if args.seeds or on_gpus(args) else preset.config_seeds_cpu
    if args.smoke_test:  # the whole path, quickly: one learning rate and one seed
        seeds, lrs = args.seeds or 1, args.lr or (preset.lrs or [None])[:1]
        lrs = None if lrs == [None] else lrs
        config_lrs = {k: v[:1] for k, v in config_lrs.items()}
        config_seeds = {}
    if args.grace_period is None:
        common["grace_period"] = preset.grace_period
    if not args.prune and (args.screen or args.floor is not None):
        flag = "--screen" if args.screen else f"--floor {args.floor:g}"
        raise ConfigError(f"--no-prune with {flag}: the screen and the floor are pruning "
                          f"rules, which --no-prune turns off; drop one of them")
    screen = preset.screen if args.screen is None else args.screen
    floor = preset.floor if args.floor is None else args.floor
    if args.smoke_test and args.floor is None:
        floor = None  # a smoke run's models are at 0% at every rung: the path, not a floor
    compare = args.compare or preset.compare
    fuse = args.fuse
    if fuse == "auto" and not (on_gpus(args) and compare == "config" and not screen):
        fuse = "off"
    return SweepOptions(configs=preset.configs, seeds=seeds, lrs=lrs, config_lrs=config_lrs,
                        config_seeds=config_seeds,
                        screen=screen, floor=floor, compare=compare, fuse=fuse,
                        recipe=preset.overrides, **common)


def main(study: str, presets: dict[str, Preset], description: str,
         argv: list[str] | None = None) -> int:
    args = parser(study, description, presets).parse_args(argv)
    args.address = args.address or cluster.job_address()  # a Ray job joins its cluster
    opts = grid_options(args, presets)
    cluster.prefer_loopback(opts.address)
    if args.dry_run:
        from addray.sweep.grid import plan_grid

        def describe(o: SweepOptions) -> str:
            plan = plan_grid(o)
            return f"{plan.n_trials} trials; {plan.pruning}"

        return dry_run(opts, describe)
    from addray.sweep.grid import run_grid  # imports Ray

    return study_exit_code(opts, run_grid(opts))


def dry_run(opts: SweepOptions, describe: Any) -> int:
    """--dry-run: every option and config checked, the plan printed (``describe(opts)``),
    nothing started."""
    from addray.sweep.options import validate

    study_dir = validate(opts)
    print(f"addray: dry run: study '{opts.study}' ({study_dir}), {describe(opts)}; "
          f"nothing started")
    return 0


def run(study: str, presets: dict[str, Preset], description: str) -> None:
    cli.run(lambda: main(study, presets, description, sys.argv[1:]))
